"""Turning a unique-constraint race into our Conflict error."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict


async def flush_unique(session: AsyncSession, conflict: Conflict) -> None:
    """Flush; if a concurrent writer took the same unique key first, raise ``conflict``."""
    try:
        await session.flush()
    except IntegrityError:
        raise conflict from None
