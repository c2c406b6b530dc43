"""Server-wide state every node shares through the database, such as the SRS secret."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import KeyValue

SRS_SECRET_KEY = "srs_secret"


async def load(session: AsyncSession, key: str) -> str | None:
    stored = await session.get(KeyValue, key)
    return None if stored is None else stored.value


async def store(session: AsyncSession, key: str, value: str) -> None:
    """Insert ``key``; a concurrent insert by another node raises IntegrityError on flush."""
    session.add(KeyValue(key=key, value=value))
    await session.flush()
