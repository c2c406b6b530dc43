"""A live SMTP server on 127.0.0.1, on the test database, for smtplib and swaks to talk to."""

from __future__ import annotations

import asyncio
import smtplib
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.reader import create_reader
from app.inbound_auth.checker import InboundChecks
from app.routing import Action
from app.routing.srs import Srs
from app.services import aliases, destinations, domains
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.limits import Gate, PenaltyBox
from app.smtp.server import start_server
from tests.conftest import HOSTNAME

T = TypeVar("T")
SMTP_TESTS = Path(__file__).parent
MAX_SIZE = 64 * 1024
SRS_SECRET = "test-srs-secret-0123456789"


@dataclass
class LiveSmtp:
    host: str
    port: int
    handler: InboundHandler

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, local_hostname="client.example", timeout=10)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """The SMTP server on both loops: `mailroute` runs on uvloop, whose transports are
    not asyncio's classes (an isinstance check on them once broke every 421)."""
    if SMTP_TESTS not in item.path.parents:
        return None
    return {"asyncio": asyncio.new_event_loop, "uvloop": new_uvloop}


def new_uvloop() -> asyncio.AbstractEventLoop:
    import uvloop

    class Loop(uvloop.Loop):  # type: ignore[misc]
        """uvloop, whose close() cannot hang on a transport a test's teardown left open.

        uvloop's close() warns about each handle still open, then closes it, then runs
        until all are closed. Under ``filterwarnings = error`` the warning is raised from
        a C callback that returns before the close, and close() waits for that handle
        forever (a CI run lost its 90 minutes so). The warning stays a warning here: it
        shows in pytest's summary, and the handle is closed."""

        def close(self) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("default", ResourceWarning)
                super().close()

    return Loop()


@pytest.fixture
def srs() -> Srs:
    return Srs(SRS_SECRET, HOSTNAME)


@asynccontextmanager
async def running_smtp(
    sessionmaker: async_sessionmaker[AsyncSession],
    srs: Srs,
    *,
    postmaster: str | None = None,
    penalty: PenaltyBox | None = None,
    checks: InboundChecks | None = None,
) -> AsyncIterator[LiveSmtp]:
    """A server on 127.0.0.1 as `mailroute smtp` runs one: with ``penalty``, its Gate and
    handler share that penalty box; with ``checks``, messages are checked (SPF, ...)."""
    # The RCPT look-up reads as in `mailroute serve` (app.db.reader).
    reader = create_reader(sessionmaker.kw["bind"])
    handler = InboundHandler(
        sessionmaker,
        srs,
        InboundConfig(hostname=HOSTNAME, queue_lifetime=timedelta(days=5), postmaster=postmaster),
        reader=reader,
        penalty=penalty,
        checks=checks,
    )
    gate = Gate(penalty=penalty) if penalty is not None else None
    server = await start_server(
        handler, host="127.0.0.1", port=0, max_message_size=MAX_SIZE, gate=gate
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield LiveSmtp("127.0.0.1", port, handler)
    finally:
        server.close()
        await server.wait_closed()
        await handler.drain()
        await reader.dispose()


@pytest.fixture
async def smtp_server(
    sessionmaker: async_sessionmaker[AsyncSession], srs: Srs
) -> AsyncIterator[LiveSmtp]:
    async with running_smtp(sessionmaker, srs) as live:
        yield live


@pytest.fixture
async def routed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """example.org with shop@ -> me@inbox.example (verified), drop@ dropping, a catch-all
    on catchall.example, and pending@ waiting for an unverified destination."""
    async with session_scope(sessionmaker) as s:
        await domains.create_domain(s, "example.org")
        await domains.create_domain(s, "catchall.example")
        await destinations.add_verified_destination(s, "me@inbox.example")
        await destinations.add_verified_destination(s, "other@inbox.example")
        await aliases.create_alias(
            s, "example.org", local_part="shop", destinations=["me@inbox.example"]
        )
        await aliases.create_alias(
            s,
            "example.org",
            local_part="team",
            destinations=["me@inbox.example", "other@inbox.example"],
        )
        await aliases.create_alias(s, "example.org", local_part="drop", action=Action.DROP)
        await aliases.put_catch_all(
            s,
            "catchall.example",
            enabled=True,
            action=Action.FORWARD,
            destinations=["me@inbox.example"],
        )


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking client (smtplib) without blocking the server's event loop."""
    return await asyncio.to_thread(function, *args)
