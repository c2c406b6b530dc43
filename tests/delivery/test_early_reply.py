"""A destination that answers before the end of data (refusing a message it finds too
big, as some servers do, then hanging up or no longer reading): the relay client must
report that answer, not a lost connection or a timeout, and not reuse the session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from app.delivery.mx import Target
from app.delivery.outcome import Result
from app.delivery.relay import RelayConfig, connect

CONFIG = RelayConfig(local_hostname="mx.mailroute.example", timeout=20.0)
# Far more than loopback's socket buffers take: the writer has to wait for the reader.
BIG = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n" * 1 + (b"y" * 78 + b"\r\n") * 400_000
REFUSAL = b"552 5.3.4 Message too big for this mailbox\r\n"

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


async def dialogue(reader: Reader, writer: Writer) -> None:
    """Greeting, EHLO, MAIL and RCPT accepted, then 354."""
    writer.write(b"220 early.example ESMTP\r\n")
    while True:
        line = await reader.readline()
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-early.example\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"250 2.0.0 OK\r\n")


async def refuse_and_hang_up(reader: Reader, writer: Writer) -> None:
    await dialogue(reader, writer)
    await reader.readexactly(64 * 1024)
    writer.write(REFUSAL)
    await writer.drain()
    writer.close()


async def refuse_and_stop_reading(reader: Reader, writer: Writer) -> None:
    await dialogue(reader, writer)
    await reader.readexactly(64 * 1024)
    writer.write(REFUSAL)
    await writer.drain()
    # The connection stays open and nothing more is read, until the test ends.
    await asyncio.get_running_loop().create_future()


@asynccontextmanager
async def serving(behaviour: Callable[[Reader, Writer], Awaitable[None]]) -> AsyncIterator[Target]:
    sessions: list[asyncio.Task[None]] = []
    writers: list[Writer] = []

    async def session(reader: Reader, writer: Writer) -> None:
        writers.append(writer)
        task = asyncio.ensure_future(behaviour(reader, writer))
        sessions.append(task)
        await asyncio.gather(task, return_exceptions=True)

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    try:
        yield Target("early", "127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in sessions:
            task.cancel()
        for writer in writers:
            writer.close()
        await asyncio.gather(*sessions, return_exceptions=True)
        await server.wait_closed()


@pytest.mark.parametrize(
    "behaviour", [refuse_and_hang_up, refuse_and_stop_reading], ids=["hang_up", "stop_reading"]
)
async def test_send_reports_a_refusal_made_before_the_end_of_data(
    behaviour: Callable[[Reader, Writer], Awaitable[None]],
) -> None:
    async with serving(behaviour) as target:
        connection = await connect(target, CONFIG)
        outcome = await asyncio.wait_for(
            connection.send("a@sender.example", "b@early.example", BIG), timeout=15
        )
        assert (outcome.result, outcome.reply) == (
            Result.PERMANENT,
            "552 5.3.4 Message too big for this mailbox",
        )
        assert not connection.alive  # the text was cut short: never reused
