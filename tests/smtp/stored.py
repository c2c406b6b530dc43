"""What the SMTP server stored, read back from the test database."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Delivery, Message

Sessionmaker = async_sessionmaker[AsyncSession]


async def stored_messages(sessionmaker: Sessionmaker) -> list[Message]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Message).order_by(Message.id)))


async def count_deliveries(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Delivery)) or 0)
