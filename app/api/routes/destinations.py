from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Response

from app.api.context import ApiContext
from app.api.deps import ContextDep, SessionDep
from app.api.routes.ids import Id
from app.api.schemas.destinations import DestinationCreate, DestinationPublic
from app.services import destinations

router = APIRouter(prefix="/destinations", tags=["destinations"])


def wake_worker(context: ApiContext, tasks: BackgroundTasks) -> None:
    """After the response, so after the commit: the worker then finds the new mail."""
    if context.on_queued is not None:
        tasks.add_task(context.on_queued)


@router.post("", status_code=201, summary="Add a destination inbox")
async def create_destination(
    body: DestinationCreate, session: SessionDep, context: ContextDep, tasks: BackgroundTasks
) -> DestinationPublic:
    """Add an inbox as ``pending`` and mail it a verification link valid for 24 hours."""
    destination = await destinations.create_destination(
        session,
        body.email,
        resolver=context.resolver,
        identity=context.identity,
        networks=context.delivery_networks,
    )
    wake_worker(context, tasks)
    return DestinationPublic.model_validate(destination, from_attributes=True)


@router.get("", summary="List destinations")
async def list_destinations(session: SessionDep) -> list[DestinationPublic]:
    """Every destination inbox, verified or pending."""
    return [
        DestinationPublic.model_validate(d, from_attributes=True)
        for d in await destinations.list_destinations(session)
    ]


@router.get("/{destination_id}", summary="Show a destination")
async def get_destination(destination_id: Id, session: SessionDep) -> DestinationPublic:
    """One destination, with its verification status."""
    return DestinationPublic.model_validate(
        await destinations.get_destination(session, destination_id), from_attributes=True
    )


@router.post("/{destination_id}/resend", summary="Resend the verification message")
async def resend_verification(
    destination_id: Id, session: SessionDep, context: ContextDep, tasks: BackgroundTasks
) -> DestinationPublic:
    """Mail a fresh verification link; earlier links stop working. At most one every 5
    minutes and 10 in 24 hours per destination, the first included: past that, 429."""
    destination = await destinations.resend_verification(
        session, destination_id, identity=context.identity
    )
    wake_worker(context, tasks)
    return DestinationPublic.model_validate(destination, from_attributes=True)


@router.delete("/{destination_id}", status_code=204, summary="Remove a destination")
async def delete_destination(destination_id: Id, session: SessionDep) -> Response:
    """Remove an inbox no alias forwards to any more (409 while one still does)."""
    await destinations.delete_destination(session, destination_id)
    return Response(status_code=204)
