"""Refused recipients reach the activity log in the background: the 550 does not wait for
a commit (a dictionary attack would otherwise cost one per guess), and the row follows."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Activity
from app.services import activity
from tests.smtp.conftest import LiveSmtp, in_thread

GUESSES = [f"guess{n}@example.org" for n in range(10)]


async def rejected(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Activity.address).where(Activity.status == activity.REJECTED)
        )
        return sorted(a for a in rows if a is not None)


def guess(smtp_server: LiveSmtp) -> tuple[list[int], float]:
    """The replies to RCPT for every guess, and how long they took in all."""
    with smtp_server.client() as client:
        client.ehlo()
        client.mail("probe@sender.example")
        started = time.monotonic()
        codes = [client.rcpt(address)[0] for address in GUESSES]
        return codes, time.monotonic() - started


async def eventually(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    for _ in range(200):
        found = await rejected(sessionmaker)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    return await rejected(sessionmaker)


async def test_refused_recipients_are_logged(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    codes, _ = await in_thread(guess, smtp_server)

    assert codes == [550] * len(GUESSES)
    assert await eventually(sessionmaker, len(GUESSES)) == sorted(GUESSES)


async def test_refusals_are_answered_while_the_database_is_busy_writing(
    smtp_server: LiveSmtp,
    routed: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("holds SQLite's write lock from another connection")
    holder = sqlite3.connect(str(make_url(database_url).database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process committing a long batch, say
    try:
        codes, took = await in_thread(guess, smtp_server)
        logged = holder.execute("SELECT count(*) FROM activity WHERE status = 'rejected'")
        assert logged.fetchone() == (0,)  # nothing could be written yet
    finally:
        holder.execute("COMMIT")
        holder.close()

    assert codes == [550] * len(GUESSES)
    assert took < 5.0, f"the refusals waited {took:.1f} s for the log"
    assert await eventually(sessionmaker, len(GUESSES)) == sorted(GUESSES)
