"""Session limits, as Postfix's smtpd: a client that sends nothing or trickles its bytes is
cut off with 421 4.4.2; a message must keep a minimum data rate, and a fast start banks no
time for a trickle after it; too many error replies end the session with 421 4.7.0; too
much mail a minute from one address hears 450 4.7.1; message text in transit shares one
memory budget, past which DATA hears 452 4.3.1.

The client here is a raw socket, so the test decides exactly which bytes go when.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Message
from app.routing.srs import Srs
from app.smtp import replies
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.limits import DATA_RESERVE, Gate, MemoryBudget, SessionLimits
from app.smtp.server import start_server
from tests.conftest import HOSTNAME

Sessionmaker = async_sessionmaker[AsyncSession]
BOUND = 15.0  # no step of these tests may take longer; the limits under test are ~1 s
BODY = b"From: a@sender.example\r\nSubject: limits\r\n\r\nHello\r\n"


class Client:
    """One SMTP connection, byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> str:
        """The next reply, all its lines joined; "" when the server has closed."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), BOUND)
            if not line:
                return "\n".join(lines)
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return "\n".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def closed(self) -> bool:
        """True once the server has closed the connection (read to the end)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), BOUND)
        except ConnectionError:  # our own late write met the closed socket
            return True
        return rest == b""

    async def trickle(self, data: bytes, gap: float) -> str:
        """Send ``data`` one byte at a time, ``gap`` seconds apart, until the server answers
        or hangs up; that answer."""
        answer = asyncio.create_task(self.reply())
        for byte in data:
            if answer.done():
                break
            await self.send(bytes([byte]))
            await asyncio.sleep(gap)
        return await answer


class SlowHandler(InboundHandler):
    """Stores as usual, then takes ``delay`` seconds more, as an in-session delivery may;
    counts the MAIL commands it is asked about."""

    delay = 0.0
    mails = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self.mails += 1
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        return reply


@pytest.fixture
def serve(sessionmaker: Sessionmaker, srs: Srs) -> Callable[..., Any]:
    @asynccontextmanager
    async def serving(
        limits: SessionLimits,
        gate: Gate | None = None,
        delay: float = 0.0,
        budget: MemoryBudget | None = None,
    ) -> AsyncIterator[Callable[[], Any]]:
        handler = SlowHandler(
            sessionmaker, srs, InboundConfig(hostname=HOSTNAME, queue_lifetime=timedelta(days=5))
        )
        handler.delay = delay
        server = await start_server(
            handler,
            host="127.0.0.1",
            port=0,
            max_message_size=1 << 20,
            gate=gate,
            limits=limits,
            budget=budget,
        )
        port = server.sockets[0].getsockname()[1]

        @asynccontextmanager
        async def connect() -> AsyncIterator[Client]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client = Client(reader, writer)
            assert (await client.reply()).startswith("220 ")
            try:
                yield client
            finally:
                writer.close()

        connect.handler = handler  # type: ignore[attr-defined]
        try:
            yield connect
        finally:
            server.close()
            await server.wait_closed()
            # As `mailroute smtp` stops: refusals still being logged are written first, or
            # their database connection outlives the test's event loop.
            await handler.drain()

    return serving


async def stored(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def start_data(client: Client) -> None:
    assert (await client.command("EHLO client.example")).startswith("250")
    assert (await client.command("MAIL FROM:<a@sender.example>")).startswith("250")
    assert (await client.command("RCPT TO:<shop@example.org>")).startswith("250")
    assert (await client.command("DATA")).startswith("354")


TIMEOUT_REPLY = replies.S421_TIMEOUT.format(hostname=HOSTNAME)
ERRORS_REPLY = replies.S421_TOO_MANY_ERRORS.format(hostname=HOSTNAME)


# --- timeouts ------------------------------------------------------------------------


async def test_silent_client_hears_421_and_is_closed(serve: Any) -> None:
    async with serve(SessionLimits(timeout=0.5)) as connect, connect() as client:
        assert await client.reply() == TIMEOUT_REPLY
        assert await client.closed()


async def test_command_timeout_restarts_after_each_command(serve: Any) -> None:
    # Three commands, each well within the timeout, together well past it.
    async with serve(SessionLimits(timeout=1.0)) as connect, connect() as client:
        for _ in range(3):
            await asyncio.sleep(0.6)
            assert (await client.command("NOOP")).startswith("250 2.0.0")


async def test_trickled_command_cannot_stretch_the_timeout(serve: Any) -> None:
    # Every byte comes well within the timeout, but the line does not come within it.
    async with serve(SessionLimits(timeout=1.0)) as connect, connect() as client:
        assert await client.trickle(b"NOOP " + b"x" * 40 + b"\r\n", gap=0.1) == TIMEOUT_REPLY
        assert await client.closed()


async def test_command_sent_in_pieces_in_time_is_answered(serve: Any) -> None:
    async with serve(SessionLimits(timeout=1.0)) as connect, connect() as client:
        assert (await client.trickle(b"NOOP\r\n", gap=0.05)).startswith("250 2.0.0")


@pytest.mark.usefixtures("routed")
async def test_trickled_message_is_cut_off_and_not_stored(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    async with serve(SessionLimits(timeout=1.0, min_data_rate=500)) as connect:
        async with connect() as client:
            await start_data(client)
            message = BODY + b"x" * 200 + b"\r\n.\r\n"
            assert await client.trickle(message, gap=0.05) == TIMEOUT_REPLY
            assert await client.closed()
    assert await stored(sessionmaker) == 0


@pytest.mark.usefixtures("routed")
async def test_message_slower_than_the_timeout_but_steady_is_accepted(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    # 15 chunks of 400 bytes, 0.2 s apart: 2,000 bytes/s, four times the minimum rate, and
    # three seconds in all, longer than the timeout. Each chunk buys more time.
    async with serve(SessionLimits(timeout=1.5, min_data_rate=500)) as connect:
        async with connect() as client:
            await start_data(client)
            await client.send(BODY)
            for _ in range(15):
                await asyncio.sleep(0.2)
                await client.send(b"y" * 398 + b"\r\n")
            await client.send(b".\r\n")
            assert (await client.reply()).startswith("250 2.0.0")
    assert await stored(sessionmaker) == 1


@pytest.mark.usefixtures("routed")
async def test_time_spent_on_the_message_does_not_count_against_the_client(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    # Storing it and the in-session delivery are ours: the client is waiting, not idle.
    async with serve(SessionLimits(timeout=0.5), delay=1.5) as connect:
        async with connect() as client:
            await start_data(client)
            await client.send(BODY + b".\r\n")
            assert (await client.reply()).startswith("250 2.0.0")
            assert (await client.command("QUIT")).startswith("221")
    assert await stored(sessionmaker) == 1


@pytest.mark.usefixtures("routed")
async def test_trickle_after_a_fast_start_is_cut_off_within_the_timeout(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    # 200 kB at once would buy 400 s at 500 bytes/s; Postfix's rule caps what it buys at
    # the timeout, so the trickle after it is cut off about a second later.
    budget = MemoryBudget(4 << 20)
    async with serve(SessionLimits(timeout=1.0, min_data_rate=500), budget=budget) as connect:
        async with connect() as client:
            await start_data(client)
            await client.send(BODY + (b"x" * 998 + b"\r\n") * 200)
            started = asyncio.get_running_loop().time()
            assert await client.trickle(b"y" * 600 + b"\r\n.\r\n", gap=0.05) == TIMEOUT_REPLY
            assert asyncio.get_running_loop().time() - started < 3.0
            assert await client.closed()
    assert await stored(sessionmaker) == 0
    assert budget.held == 0


# --- the memory budget ---------------------------------------------------------------

FILLER = (b"z" * 998 + b"\r\n") * 100  # 100 kB of text, held until its DATA ends
# What of FILLER is surely in the message's buffer once sent: the reader keeps the last
# few kB back while it looks for the end of data.
ARRIVED = len(FILLER) - 8 * 1024
NO_ROOM = replies.S452_NO_ROOM


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(int(BOUND / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.mark.usefixtures("routed")
async def test_data_hears_452_while_others_hold_the_budget_then_gets_through(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    # Two messages of 100 kB in transit leave less than DATA_RESERVE of 256 KiB.
    budget = MemoryBudget(4 * DATA_RESERVE)
    async with serve(SessionLimits(), budget=budget) as connect:
        async with connect() as first, connect() as second, connect() as late:
            for holder in (first, second):
                await start_data(holder)
                await holder.send(FILLER)
            await until(lambda: budget.held >= 2 * ARRIVED)
            for command in ("EHLO client.example", "MAIL FROM:<a@sender.example>"):
                assert (await late.command(command)).startswith("250")
            assert (await late.command("RCPT TO:<shop@example.org>")).startswith("250")
            assert await late.command("DATA") == NO_ROOM
            for holder in (first, second):
                await holder.send(b".\r\n")
                assert (await holder.reply()).startswith("250 2.0.0")
            assert budget.held == 0
            assert (await late.command("DATA")).startswith("354")
            await late.send(BODY + b".\r\n")
            assert (await late.reply()).startswith("250 2.0.0")
    assert await stored(sessionmaker) == 3
    assert budget.held == 0


@pytest.mark.usefixtures("routed")
async def test_message_outgrowing_the_budget_is_dropped_and_hears_452(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    # Both get their 354 while there is room; together they would need more than there
    # is: the one that runs out is dropped as it streams in, and never held past the limit.
    budget = MemoryBudget(3 * DATA_RESERVE)
    most = 0
    async with serve(SessionLimits(), budget=budget) as connect:
        async with connect() as small, connect() as large:
            await start_data(small)
            await start_data(large)
            await small.send(FILLER)
            await until(lambda: budget.held >= ARRIVED)
            for _ in range(2):
                await large.send(FILLER)
                most = max(most, budget.held)
            await large.send(b".\r\n")
            assert await large.reply() == NO_ROOM
            await small.send(b".\r\n")
            assert (await small.reply()).startswith("250 2.0.0")
    assert most <= budget.limit
    assert await stored(sessionmaker) == 1
    assert budget.held == 0


@pytest.mark.usefixtures("routed")
async def test_connection_dropped_mid_data_gives_its_room_back(serve: Any) -> None:
    budget = MemoryBudget(4 * DATA_RESERVE)
    async with serve(SessionLimits(), budget=budget) as connect:
        for _ in range(3):
            async with connect() as client:
                await start_data(client)
                await client.send(FILLER)
                await until(lambda: budget.held >= ARRIVED)
            # The client hung up: its text is dropped, its room given back.
            await until(lambda: budget.held == 0)
        async with connect() as client:
            await start_data(client)
            await client.send(FILLER)
            await until(lambda: budget.held >= ARRIVED)
            client.writer.transport.abort()  # a reset, not a FIN
            await until(lambda: budget.held == 0)


# --- the error budget ----------------------------------------------------------------


@pytest.mark.usefixtures("routed")
async def test_errors_up_to_the_limit_keep_the_session(serve: Any) -> None:
    async with serve(SessionLimits(error_limit=3)) as connect, connect() as client:
        assert (await client.command("EHLO client.example")).startswith("250")
        assert (await client.command("MAIL FROM:<a@sender.example>")).startswith("250")
        assert (await client.command("RCPT TO:<nobody@example.org>")).startswith("550 5.1.1")
        assert (await client.command("RCPT TO:<x@foreign.example>")).startswith("550 5.7.1")
        assert (await client.command("RCPT TO:<shop@example.org>")).startswith("250")


@pytest.mark.usefixtures("routed")
async def test_too_many_errors_end_the_session_with_421(serve: Any) -> None:
    # Refused recipients count, as in Postfix: a dictionary attack ends after a few.
    async with serve(SessionLimits(error_limit=3)) as connect, connect() as client:
        assert (await client.command("EHLO client.example")).startswith("250")
        assert (await client.command("BOGUS")).startswith("500 5.5.2")
        assert (await client.command("MAIL FROM:<a@sender.example>")).startswith("250")
        assert (await client.command("RCPT TO:<nobody@example.org>")).startswith("550 5.1.1")
        reply = await client.command("RCPT TO:<nobody2@example.org>")
        assert reply == replies.S550_UNKNOWN_ADDRESS.format(address="nobody2@example.org")
        assert await client.reply() == ERRORS_REPLY
        assert await client.closed()


async def test_pipelined_commands_after_the_421_get_no_answer(serve: Any) -> None:
    async with serve(SessionLimits(error_limit=2)) as connect, connect() as client:
        await client.send(b"BOGUS\r\nBOGUS\r\nNOOP\r\nNOOP\r\n")
        received = await asyncio.wait_for(client.reader.read(), BOUND)
        lines = received.decode().splitlines()
        assert lines[-1] == ERRORS_REPLY
        assert not any(line.startswith("250") for line in lines)


@pytest.mark.usefixtures("routed")
async def test_transaction_pipelined_past_the_421_is_not_stored(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    # A client that does not wait for 354 either: after the 421 nothing it sent is run.
    async with serve(SessionLimits(error_limit=2)) as connect, connect() as client:
        await client.send(
            b"EHLO client.example\r\nBOGUS\r\nBOGUS\r\nMAIL FROM:<a@sender.example>\r\n"
            b"RCPT TO:<shop@example.org>\r\nDATA\r\n" + BODY + b".\r\n"
        )
        received = await asyncio.wait_for(client.reader.read(), BOUND)
        assert received.decode().splitlines()[-1] == ERRORS_REPLY
        assert connect.handler.mails == 0
    assert await stored(sessionmaker) == 0


@pytest.mark.usefixtures("routed")
async def test_recipients_past_the_hundred_are_not_errors(
    serve: Any, sessionmaker: Sessionmaker
) -> None:
    # RFC 5321 4.5.3.1.10: the client sends those in a next transaction; the first must
    # not be cut off for them (Postfix: smtpd_recipient_overshoot_limit).
    async with serve(SessionLimits(error_limit=3)) as connect, connect() as client:
        assert (await client.command("EHLO client.example")).startswith("250")
        assert (await client.command("MAIL FROM:<a@sender.example>")).startswith("250")
        answers = [await client.command(f"RCPT TO:<r{n}@catchall.example>") for n in range(105)]
        assert (
            answers[99].startswith("250")
            and answers[100:] == [replies.S452_TOO_MANY_RECIPIENTS] * 5
        )
        assert (await client.command("DATA")).startswith("354")
        await client.send(BODY + b".\r\n")
        assert (await client.reply()).startswith("250 2.0.0")
    assert await stored(sessionmaker) == 1


async def test_path_of_a_lone_bracket_is_a_syntax_error(serve: Any) -> None:
    async with serve(SessionLimits()) as connect, connect() as client:
        assert (await client.command("EHLO client.example")).startswith("250")
        assert await client.command("MAIL FROM:<") == replies.S501_BAD_SENDER


async def test_client_that_stops_reading_loses_its_place(serve: Any) -> None:
    # Pipelined EHLOs whose answers it never reads: our writes back up, the timeout's 421
    # cannot be flushed, so closing politely would never end; the connection is aborted.
    gate = Gate()
    async with serve(SessionLimits(timeout=0.5, hang_up_grace=0.2), gate) as connect:
        async with connect() as client:
            port = client.writer.get_extra_info("peername")[1]
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            pending = b"EHLO client.example\r\n" * 200_000
            for _ in range(int(BOUND / 0.01)):
                try:
                    pending = pending[sock.send(pending[:65536]) :]
                except BlockingIOError:
                    pass
                except OSError:
                    break  # aborted
                if gate.active == 0 or not pending:
                    break
                await asyncio.sleep(0.01)
            for _ in range(int(BOUND / 0.01)):
                if gate.active == 0:
                    break
                await asyncio.sleep(0.01)
            assert gate.active == 0


async def test_noop_flood_becomes_errors_past_the_junk_limit(serve: Any) -> None:
    limits = SessionLimits(error_limit=3, junk_command_limit=5)
    async with serve(limits) as connect, connect() as client:
        for _ in range(7):  # five free, then two errors
            assert (await client.command("NOOP")).startswith("250 2.0.0")
        assert await client.command("RSET") == ERRORS_REPLY
        assert await client.closed()


# --- the message rate ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_message_rate_per_address(serve: Any) -> None:
    clock = Clock()
    gate = Gate(messages_per_minute=2, clock=clock)
    async with serve(SessionLimits(), gate) as connect, connect() as client:
        assert (await client.command("EHLO client.example")).startswith("250")
        for _ in range(2):
            assert (await client.command("MAIL FROM:<a@sender.example>")).startswith("250")
            assert (await client.command("RSET")).startswith("250")
        third = await client.command("MAIL FROM:<a@sender.example>")
        assert third == replies.S450_TOO_MUCH_MAIL.format(ip="127.0.0.1")
        clock.now += 61
        assert (await client.command("MAIL FROM:<a@sender.example>")).startswith("250")


def test_message_rate_counts_addresses_apart() -> None:
    clock = Clock()
    gate = Gate(messages_per_minute=1, clock=clock)
    assert gate.allow_message("192.0.2.1")
    assert not gate.allow_message("192.0.2.1")
    assert gate.allow_message("192.0.2.2")


def test_message_rate_refills_steadily() -> None:
    clock = Clock()
    gate = Gate(messages_per_minute=2, clock=clock)
    assert gate.allow_message("192.0.2.1")
    assert gate.allow_message("192.0.2.1")
    assert not gate.allow_message("192.0.2.1")
    clock.now += 30  # half a minute earns one message back, not two
    assert gate.allow_message("192.0.2.1")
    assert not gate.allow_message("192.0.2.1")


def test_message_rate_off_by_default() -> None:
    gate = Gate()
    assert all(gate.allow_message("192.0.2.1") for _ in range(10_000))


# --- AUTH: not a submission server ---------------------------------------------------


async def test_auth_is_refused_and_not_listed_in_help(serve: Any) -> None:
    async with serve(SessionLimits()) as connect, connect() as client:
        assert (await client.command("EHLO client.example")).startswith("250")
        assert await client.command("AUTH PLAIN AGFAYg==") == replies.S503_NO_AUTH
        help_reply = await client.command("HELP")
        commands = help_reply.partition("Supported commands:")[2].split()
        assert "AUTH" not in commands
        assert {"EHLO", "HELO", "MAIL", "RCPT", "DATA", "NOOP", "RSET", "QUIT"} <= set(commands)
