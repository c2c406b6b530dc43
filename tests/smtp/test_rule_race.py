"""A rule's max_messages and its switch hold under concurrency: RCPT decides on what it
read, so the count is taken again, atomically, when the message is stored
(app.services.rule_use). Concurrent sessions to an alias that takes one message deliver
one; an alias disabled between RCPT and DATA delivers nothing, and a message left with no
recipient is refused, never answered 250 for nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Activity, Delivery, Rule
from app.services import aliases
from app.smtp import replies
from tests.smtp.conftest import LiveSmtp, in_thread

Sessionmaker = async_sessionmaker[AsyncSession]
SENDER = "a@sender.example"
BODY = b"From: a@sender.example\r\nSubject: race\r\n\r\nHello\r\n"
SESSIONS = 5
REFUSED = replies.S550_NO_RECIPIENT_LEFT


@pytest.fixture
async def once(routed: None, sessionmaker: Sessionmaker) -> str:
    """once@example.org, which takes one message."""
    async with session_scope(sessionmaker) as s:
        await aliases.create_alias(
            s, "example.org", local_part="once", destinations=["me@inbox.example"], max_messages=1
        )
    return "once@example.org"


async def deliveries(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as s:
        return int(await s.scalar(select(func.count()).select_from(Delivery)) or 0)


def reply_of(code: int, text: bytes) -> str:
    return f"{code} {text.decode()}"


def racing_sessions(live: LiveSmtp, address: str, count: int) -> list[str]:
    """``count`` sessions that each get their RCPT accepted, then all send DATA at once;
    the final replies."""
    all_accepted = threading.Barrier(count, timeout=30)

    def one() -> str:
        with live.client() as client:
            client.ehlo()
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt(address)[0] == 250
            all_accepted.wait()  # every RCPT saw a rule with room for one more
            code, _ = client.docmd("DATA")
            assert code == 354
            client.send(BODY + b".\r\n")
            return reply_of(*client.getreply())

    results: list[str] = [""] * count
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            results[n] = one()
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)
            all_accepted.abort()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


async def test_concurrent_sessions_to_a_one_message_alias_deliver_one(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker, once: str
) -> None:
    results = await in_thread(racing_sessions, smtp_server, once, SESSIONS)

    accepted = [r for r in results if r.startswith("250 ")]
    assert len(accepted) == 1, results
    assert sorted(r for r in results if not r.startswith("250 ")) == [REFUSED] * (SESSIONS - 1)
    assert await deliveries(sessionmaker) == 1
    async with sessionmaker() as s:
        assert await s.scalar(select(Rule.message_count).where(Rule.local_part == "once")) == 1
        refusals = await s.scalar(
            select(func.count()).select_from(Activity).where(Activity.status == "rejected")
        )
    assert refusals == SESSIONS - 1


async def between_rcpt_and_data(
    live: LiveSmtp, recipients: list[str], change: Callable[[AsyncSession], Awaitable[object]]
) -> str:
    """One session: every RCPT accepted, then ``change`` committed, then DATA; its reply."""
    accepted, changed = threading.Event(), threading.Event()

    def send() -> str:
        with live.client() as client:
            client.ehlo()
            assert client.mail(SENDER)[0] == 250
            for address in recipients:
                assert client.rcpt(address)[0] == 250
            accepted.set()
            assert changed.wait(30)
            code, _ = client.docmd("DATA")
            assert code == 354
            client.send(BODY + b".\r\n")
            return reply_of(*client.getreply())

    sending = asyncio.ensure_future(in_thread(send))
    try:
        assert await in_thread(accepted.wait, 30)
        async with session_scope(live.handler.sessionmaker) as s:
            await change(s)
    finally:
        changed.set()
    return await sending


def rule_update(local_part: str, **values: object) -> Callable[[AsyncSession], Awaitable[object]]:
    return lambda s: s.execute(update(Rule).where(Rule.local_part == local_part).values(**values))


async def test_alias_disabled_between_rcpt_and_data_gets_nothing(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker, routed: None
) -> None:
    reply = await between_rcpt_and_data(
        smtp_server, ["shop@example.org"], rule_update("shop", enabled=False)
    )
    assert reply == REFUSED
    assert await deliveries(sessionmaker) == 0


async def test_message_still_goes_where_a_rule_took_it(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker, routed: None
) -> None:
    # once@ goes to other@, shop@ to me@: once@ is used up before DATA, shop@ is not.
    async with session_scope(sessionmaker) as s:
        await aliases.create_alias(
            s,
            "example.org",
            local_part="once",
            destinations=["other@inbox.example"],
            max_messages=1,
        )
    reply = await between_rcpt_and_data(
        smtp_server,
        ["once@example.org", "shop@example.org"],
        rule_update("once", message_count=1),
    )
    assert reply.startswith("250 2.0.0")
    async with sessionmaker() as s:
        recipients = (await s.scalars(select(Delivery.recipient))).all()
    assert recipients == ["me@inbox.example"]
