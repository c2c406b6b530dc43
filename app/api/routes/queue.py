from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import SessionDep
from app.api.routes.ids import Id
from app.api.schemas.activity import QueueItemPublic
from app.db.models import Delivery
from app.db.types import utcnow
from app.services import queue

router = APIRouter(prefix="/queue", tags=["queue"])


def queue_item(delivery: Delivery) -> QueueItemPublic:
    return QueueItemPublic(
        id=delivery.id,
        queue_id=delivery.message.queue_id,
        status=delivery.status,
        original_rcpt=delivery.original_rcpt,
        recipient=delivery.recipient,
        mail_from=delivery.mail_from,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        expires_at=delivery.expires_at,
        last_remote=delivery.last_remote,
        last_reply=delivery.last_reply,
        created_at=delivery.created_at,
    )


@router.get("", summary="List what waits for delivery")
async def list_queue(session: SessionDep) -> list[QueueItemPublic]:
    """Deliveries not yet done (queued for a retry, or being attempted), soonest first."""
    return [queue_item(d) for d in await queue.list_waiting(session)]


@router.post("/{delivery_id}/retry", summary="Retry a delivery now")
async def retry_delivery(delivery_id: Id, session: SessionDep) -> QueueItemPublic:
    """Make a deferred delivery due at once; a worker picks it up within seconds."""
    return queue_item(await queue.retry_now(session, delivery_id, utcnow()))


@router.delete("/{delivery_id}", status_code=204, summary="Delete a delivery")
async def delete_delivery(delivery_id: Id, session: SessionDep) -> Response:
    """Give up a waiting delivery, without a bounce (409 while it is being attempted)."""
    await queue.remove(session, delivery_id, utcnow())
    return Response(status_code=204)
