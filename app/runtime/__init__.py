"""Assembling and running the service's roles from settings; used only by the CLI.

Each role is a module here with a ``run(rt, stop, ...)`` that the CLI hands to
:func:`run`:

- ``api``: the management API alone;
- ``smtp``: the inbound SMTP server alone (a ``worker`` somewhere delivers what it queues);
- ``worker``: a delivery worker alone, with the hourly maintenance;
- ``serve``: the API and one SMTP listener in this process, the delivery worker (and SMTP
  processes beyond the first) as children it supervises (app.supervisor).

A role runs until SIGTERM or SIGINT sets ``stop``; its parts then stop together.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.engine import (
    create_engine,
    create_sessionmaker,
    create_sqlite_writer,
    session_scope,
)
from app.db.reader import Reader, create_reader
from app.db.transactions import SessionTransactions, ThreadTransactions, Transactions
from app.resolver import DnsResolver
from app.routing.srs import Srs
from app.services import server_state


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    reader: Reader  # the RCPT look-up's queries (app.db.reader)
    resolver: DnsResolver
    transactions: Transactions  # where the SMTP server's group commits run


Role = Callable[[Runtime, asyncio.Event], Awaitable[None]]
Part = Coroutine[Any, Any, None]


async def run(settings: Settings, role: Role) -> None:
    """Run ``role`` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with runtime(settings) as rt:
        await role(rt, stop)


async def together(stop: asyncio.Event, *parts: Part) -> None:
    """Run a role's parts side by side until each has returned."""
    await asyncio.gather(*(_stopping_all_on_error(part, stop) for part in parts))


async def _stopping_all_on_error(part: Part, stop: asyncio.Event) -> None:
    try:
        await part
    except BaseException:
        stop.set()  # one part failing (a port in use, say) stops the others cleanly
        raise


@contextlib.asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    engine = create_engine(settings.database_url)
    reader = create_reader(engine)
    sessionmaker = create_sessionmaker(engine)
    transactions: Transactions
    if engine.dialect.name == "sqlite":
        transactions = ThreadTransactions(create_sqlite_writer(settings.database_url))
    else:
        transactions = SessionTransactions(sessionmaker)
    try:
        yield Runtime(
            settings,
            engine,
            sessionmaker,
            reader,
            DnsResolver(settings.dns_nameservers),
            transactions,
        )
    finally:
        await engine.dispose()
        await reader.dispose()
        if isinstance(transactions, ThreadTransactions):
            transactions.close()


async def load_srs(rt: Runtime) -> Srs:
    """SRS with the configured secret, or the one generated on first start and shared by
    every node through the database (so any node reverses what another rewrote)."""
    secret = rt.settings.srs_secret
    if not secret:
        async with session_scope(rt.sessionmaker) as session:
            secret = await server_state.load(session, server_state.SRS_SECRET_KEY)
    if not secret:
        with contextlib.suppress(IntegrityError):  # another node stored one first
            async with session_scope(rt.sessionmaker) as session:
                await server_state.store(
                    session, server_state.SRS_SECRET_KEY, secrets.token_urlsafe(32)
                )
        async with session_scope(rt.sessionmaker) as session:
            secret = await server_state.load(session, server_state.SRS_SECRET_KEY)
    assert secret
    return Srs(secret, rt.settings.hostname)
