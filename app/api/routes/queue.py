from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import SessionDep
from app.api.routes.ids import Id
from app.api.schemas.activity import QueueItemPublic
from app.db.types import utcnow
from app.services import queue

router = APIRouter(prefix="/queue", tags=["queue"])


@router.get("", summary="List what waits for delivery")
async def list_queue(session: SessionDep) -> list[QueueItemPublic]:
    """Deliveries not yet done (queued for a retry, or being attempted), soonest first."""
    return [
        QueueItemPublic.model_validate(d, from_attributes=True)
        for d in await queue.list_waiting(session)
    ]


@router.post("/{delivery_id}/retry", summary="Retry a delivery now")
async def retry_delivery(delivery_id: Id, session: SessionDep) -> QueueItemPublic:
    """Make a deferred delivery due at once; a worker picks it up within seconds."""
    return QueueItemPublic.model_validate(
        await queue.retry_now(session, delivery_id, utcnow()), from_attributes=True
    )


@router.delete("/{delivery_id}", status_code=204, summary="Delete a delivery")
async def delete_delivery(delivery_id: Id, session: SessionDep) -> Response:
    """Give up a waiting delivery, without a bounce (409 while it is being attempted)."""
    await queue.remove(session, delivery_id, utcnow())
    return Response(status_code=204)
