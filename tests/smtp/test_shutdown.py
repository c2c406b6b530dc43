"""Graceful shutdown: new sessions hear 421 4.3.2, open ones finish, then the server stops."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Message
from app.routing.srs import Srs
from app.smtp import replies
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.protocol import Drain
from app.smtp.server import start_server
from tests.conftest import HOSTNAME
from tests.smtp.conftest import LiveSmtp, in_thread

BODY = b"From: a@sender.example\r\nSubject: during shutdown\r\n\r\nHello\r\n"


@pytest.fixture
def drain() -> Drain:
    return Drain()


@pytest.fixture
async def draining_server(
    sessionmaker: async_sessionmaker[AsyncSession], srs: Srs, drain: Drain
) -> AsyncIterator[LiveSmtp]:
    handler = InboundHandler(
        sessionmaker, srs, InboundConfig(hostname=HOSTNAME, queue_lifetime=timedelta(days=5))
    )
    server = await start_server(
        handler, host="127.0.0.1", port=0, max_message_size=65536, drain=drain
    )
    yield LiveSmtp("127.0.0.1", server.sockets[0].getsockname()[1], handler)
    server.close()
    await server.wait_closed()


def _connect(live: LiveSmtp) -> tuple[int, bytes]:
    try:
        with live.client() as client:
            return client.noop()
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code, exc.smtp_error


async def test_shutdown_new_session_gets_421(draining_server: LiveSmtp, drain: Drain) -> None:
    drain.draining = True

    code, text = await in_thread(_connect, draining_server)

    assert f"{code} {text.decode()}" == replies.S421_SHUTTING_DOWN


async def test_shutdown_before_draining_sessions_are_served(
    draining_server: LiveSmtp, drain: Drain
) -> None:
    assert await in_thread(_connect, draining_server) == (250, b"2.0.0 OK")
    assert drain.active == 0


async def test_shutdown_open_session_finishes_its_message(
    draining_server: LiveSmtp,
    drain: Drain,
    routed: None,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await in_thread(draining_server.client)
    try:
        await in_thread(client.ehlo)
        assert drain.active == 1
        drain.draining = True
        await in_thread(client.mail, "a@sender.example")
        await in_thread(client.rcpt, "shop@example.org")
        code, _ = await in_thread(client.data, BODY)
    finally:
        await in_thread(client.quit)
    assert code == 250
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1


async def test_shutdown_waits_for_open_sessions(draining_server: LiveSmtp, drain: Drain) -> None:
    client = await in_thread(draining_server.client)
    drain.draining = True
    waiting = asyncio.ensure_future(drain.wait_idle())
    await asyncio.sleep(0.2)
    assert not waiting.done()

    await in_thread(client.quit)

    await asyncio.wait_for(waiting, 5)
    assert drain.active == 0
