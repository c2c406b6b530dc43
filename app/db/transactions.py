"""Where a synchronous unit of work runs: ``await transactions.run(work)`` runs
``work(session)`` in a transaction of its own, committed when it returns, on a synchronous
Session. The SMTP server's group commits (app.db.group_commit) and the delivery worker's
claims and records run their statements this way, each transaction in one go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db.engine import session_scope

T = TypeVar("T")


class Transactions(Protocol):
    """Where a unit of work's transaction runs."""

    async def run(self, work: Callable[[Session], T]) -> T: ...


class SessionTransactions:
    """In a unit of work of the async engine (the synchronous ``work`` runs through
    AsyncSession.run_sync: on asyncpg, each statement is a native await)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def run(self, work: Callable[[Session], T]) -> T:
        async with session_scope(self.sessionmaker) as session:
            return await session.run_sync(work)


class ThreadTransactions:
    """On SQLite: the whole transaction in one thread, through the sqlite3 module.
    Through aiosqlite each statement, the BEGIN and the COMMIT is a round trip between
    the event loop and the database's thread; under load each waits its turn behind the
    sessions the loop serves, and a transaction lasts far longer than its work
    (bench/forwarding.py measures what that costs in mail accepted per second)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    async def run(self, work: Callable[[Session], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, work)

    def _transaction(self, work: Callable[[Session], T]) -> T:
        # Objects loaded here are used after the commit, in the event loop's thread.
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            return work(session)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.engine.dispose()
