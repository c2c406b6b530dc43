"""A hostile mail host's replies are bounded where they enter (app.delivery.outcome).

The peer is a raw asyncio server, not aiosmtpd: it answers RCPT with what no SMTP server
library would send, a reply line of many KiB or a reply of many continuation lines (RFC
5321 4.5.3.1.5 allows 512 octets a line). Whatever it sends, the outcome we keep, store
and quote in a DSN or an in-session refusal is at most MAX_REPLY characters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Activity, Message
from app.delivery.mx import Target
from app.delivery.outcome import MAX_REPLY, Result
from app.delivery.relay import RelayConfig, connect
from app.delivery.worker import DeliveryWorker, WorkerConfig
from tests.conftest import HOSTNAME
from tests.delivery.arrivals import DESTINATION, SENDER, queue_inbound
from tests.delivery.conftest import Clock
from tests.fakes import FakeResolver

CONFIG = RelayConfig(local_hostname="mx.mailroute.example", timeout=10)
# An 8 KiB line of hex digits and colons: the shape the old IPv6 pattern backtracked on.
LONG_LINE = b"550 5.1.1 " + b"0a:" * 2700 + b"\r\n"
CONTINUED = (
    b"".join(b"550-5.1.1 " + b"f:" * 240 + b"\r\n" for _ in range(60)) + b"550 5.1.1 end\r\n"
)
HUGE_LINE = b"550 5.1.1 " + b"x" * 65536 + b"\r\n"


@asynccontextmanager
async def hostile_mx(rcpt_reply: bytes) -> AsyncIterator[Target]:
    """A mail host that speaks enough SMTP to get to RCPT, and answers it with
    ``rcpt_reply``; RSET and QUIT are answered, anything else accepted."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hostile.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-hostile.test\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT":
                    writer.write(rcpt_reply)
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Target("hostile.test", "127.0.0.1", port)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("reply", [LONG_LINE, CONTINUED], ids=["8k-line", "60-lines"])
async def test_relay_refusal_reply_is_bounded(reply: bytes) -> None:
    async with hostile_mx(reply) as target:
        connection = await connect(target, CONFIG)
        try:
            outcome = await connection.send(SENDER, DESTINATION, b"Subject: x\r\n\r\nx\r\n")
        finally:
            await connection.close()
    assert len(reply) > 8000
    assert outcome.result is Result.PERMANENT
    assert outcome.status == "5.1.1"
    assert outcome.reply.startswith("550 5.1.1 ")
    assert len(outcome.reply) <= MAX_REPLY


async def test_relay_reply_line_over_aiosmtplib_limit_is_bounded_and_temporary() -> None:
    async with hostile_mx(HUGE_LINE) as target:
        connection = await connect(target, CONFIG)
        try:
            outcome = await connection.send(SENDER, DESTINATION, b"Subject: x\r\n\r\nx\r\n")
        finally:
            await connection.close()
    # Not an SMTP reply we can read: nothing final can be concluded from it.
    assert outcome.result is Result.TEMPORARY
    assert len(outcome.reply) <= MAX_REPLY


@pytest.mark.parametrize("reply", [LONG_LINE, CONTINUED], ids=["8k-line", "60-lines"])
async def test_worker_stores_and_quotes_a_bounded_reply(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    reply: bytes,
) -> None:
    async with hostile_mx(reply) as target:
        config = WorkerConfig(hostname=HOSTNAME, smarthost=target, relay=CONFIG)
        worker = DeliveryWorker(sessionmaker, FakeResolver(), config, clock=clock)
        await queue_inbound(sessionmaker, clock)
        await worker.run_once()
    async with sessionmaker() as session:
        [row] = list(await session.scalars(select(Activity)))
        [bounce] = list(await session.scalars(select(Message).where(Message.kind == "dsn")))
    assert row.status == "bounced"
    assert row.reply is not None and len(row.reply) <= MAX_REPLY
    # The DSN quotes the reply twice (its text, its Diagnostic-Code): bounded both times.
    quoted = bounce.content.count(b"0a:") + bounce.content.count(b"f:")
    assert 0 < quoted <= MAX_REPLY
