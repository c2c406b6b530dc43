"""The gate: graceful shutdown (new sessions hear 421 4.3.2, open ones finish) and
connection limits per client address and in all (421, as Postfix's anvil)."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Message
from app.routing.srs import Srs
from app.smtp import replies
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.limits import Gate
from app.smtp.server import start_server
from tests.conftest import HOSTNAME
from tests.smtp.conftest import LiveSmtp, in_thread

BODY = b"From: a@sender.example\r\nSubject: during shutdown\r\n\r\nHello\r\n"


@pytest.fixture
def gate() -> Gate:
    return Gate(max_per_ip=2, max_total=3)


@pytest.fixture
async def draining_server(
    sessionmaker: async_sessionmaker[AsyncSession], srs: Srs, gate: Gate
) -> AsyncIterator[LiveSmtp]:
    handler = InboundHandler(
        sessionmaker, srs, InboundConfig(hostname=HOSTNAME, queue_lifetime=timedelta(days=5))
    )
    server = await start_server(
        handler, host="127.0.0.1", port=0, max_message_size=65536, gate=gate
    )
    yield LiveSmtp("127.0.0.1", server.sockets[0].getsockname()[1], handler)
    server.close()
    await server.wait_closed()
    await handler.drain()


def _connect(live: LiveSmtp) -> tuple[int, bytes]:
    try:
        with live.client() as client:
            return client.noop()
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code, exc.smtp_error


async def test_shutdown_new_session_gets_421(draining_server: LiveSmtp, gate: Gate) -> None:
    gate.draining = True

    code, text = await in_thread(_connect, draining_server)

    assert f"{code} {text.decode()}" == replies.S421_SHUTTING_DOWN


async def test_shutdown_before_draining_sessions_are_served(
    draining_server: LiveSmtp, gate: Gate
) -> None:
    assert await in_thread(_connect, draining_server) == (250, b"2.0.0 OK")
    assert gate.active == 0


async def test_shutdown_open_session_finishes_its_message(
    draining_server: LiveSmtp,
    gate: Gate,
    routed: None,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await in_thread(draining_server.client)
    try:
        await in_thread(client.ehlo)
        assert gate.active == 1
        gate.draining = True
        await in_thread(client.mail, "a@sender.example")
        await in_thread(client.rcpt, "shop@example.org")
        code, _ = await in_thread(client.data, BODY)
    finally:
        await in_thread(client.quit)
    assert code == 250
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1


async def test_shutdown_waits_for_open_sessions(draining_server: LiveSmtp, gate: Gate) -> None:
    client = await in_thread(draining_server.client)
    gate.draining = True
    waiting = asyncio.ensure_future(gate.wait_idle())
    await asyncio.sleep(0.2)
    assert not waiting.done()

    await in_thread(client.quit)

    await asyncio.wait_for(waiting, 5)
    assert gate.active == 0


async def test_gate_refuses_a_third_session_from_one_address(
    draining_server: LiveSmtp, gate: Gate
) -> None:
    first, second = [await in_thread(draining_server.client) for _ in range(2)]
    try:
        code, text = await in_thread(_connect, draining_server)
    finally:
        for client in (first, second):
            await in_thread(client.quit)
    assert f"{code} {text.decode()}" == replies.S421_TOO_MANY_FROM_YOU


async def test_gate_admits_again_once_a_session_ends(draining_server: LiveSmtp, gate: Gate) -> None:
    first, second = [await in_thread(draining_server.client) for _ in range(2)]
    await in_thread(first.quit)
    await _until(lambda: gate.active == 1)
    try:
        assert await in_thread(_connect, draining_server) == (250, b"2.0.0 OK")
    finally:
        await in_thread(second.quit)


def test_gate_caps_total_sessions() -> None:
    gate = Gate(max_per_ip=10, max_total=2)
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.2") is None
    assert gate.admit("192.0.2.3") == replies.S421_TOO_MANY_CONNECTIONS
    gate.closed("192.0.2.1")
    assert gate.admit("192.0.2.3") is None


def test_gate_counts_addresses_apart() -> None:
    gate = Gate(max_per_ip=1)
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.1") == replies.S421_TOO_MANY_FROM_YOU
    assert gate.admit("192.0.2.2") is None


async def _until(condition: Callable[[], bool]) -> None:
    """Poll, bounded: the server notices a closed connection a moment after the client."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")
