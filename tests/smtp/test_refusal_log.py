"""Refused recipients reach the activity log in the background: the 550 does not wait for
a commit (a dictionary attack would otherwise cost one per guess), and the row follows.
The log is bounded per client: the first ten a minute one by one, then one summary row
with the count, so a dictionary attack cannot fill the database at the speed it guesses."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Activity
from app.services import activity
from app.smtp.refusals import RefusalLog
from tests.smtp.conftest import LiveSmtp, in_thread
from tests.smtp.raw import greeted
from tests.smtp.stored import Sessionmaker

GUESSES = [f"guess{n}@example.org" for n in range(10)]
PER_SESSION = 15  # under the error limit (20), so every RCPT is answered


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


def guess_recipients(live: LiveSmtp, session: int) -> list[int]:
    with greeted(live.host, live.port) as client:
        codes = [client.command(b"MAIL FROM:<spammer@spam.example>").code]
        for n in range(PER_SESSION):
            codes.append(client.command(f"RCPT TO:<guess{session}-{n}@example.org>".encode()).code)
        return codes


async def logged(sessionmaker: Sessionmaker) -> list[Activity]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Activity).order_by(Activity.id)))


async def test_refusal_log_keeps_ten_rows_a_minute_and_a_summary(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    for session in range(3):
        codes = await in_thread(guess_recipients, smtp_server, session)
        assert codes == [250] + [550] * PER_SESSION
    await smtp_server.handler.drain()

    rows = await logged(sessionmaker)
    assert [r.address for r in rows[:10]] == [f"guess0-{n}@example.org" for n in range(10)]
    assert len(rows) == 11
    summary = rows[10]
    assert (summary.status, summary.address, summary.client_ip) == ("rejected", None, "127.0.0.1")
    assert summary.reply is not None and summary.reply.startswith("35 more recipients refused")


async def test_refusal_log_writes_the_summary_when_the_minute_is_over() -> None:
    written: list[dict[str, Any]] = []
    log = RefusalLog(written.append, per_minute=2, window=0.05)
    row = activity.row(
        activity.Envelope("192.0.2.1", "a@b.example"), status="rejected", address="x"
    )
    for _ in range(5):
        log.refused(row)
    assert len(written) == 2
    await asyncio.sleep(0.2)
    assert len(written) == 3
    assert written[2]["reply"].startswith("3 more recipients refused")
