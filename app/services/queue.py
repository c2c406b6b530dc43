"""Reading the outbound queue: what waits for delivery, and the stored messages."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Delivery, Message
from app.errors import NotFound

WAITING = ("queued", "delivering")


async def list_waiting(session: AsyncSession, limit: int = 1000) -> list[Delivery]:
    """Deliveries not yet done, soonest first."""
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.status.in_(WAITING))
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
    )


async def get_message(session: AsyncSession, message_id: int) -> Message:
    message = await session.get(Message, message_id)
    if message is None:
        raise NotFound(f"no stored message with id {message_id}")
    return message
