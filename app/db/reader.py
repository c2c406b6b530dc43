"""Read-only queries on the SMTP hot path (the RCPT look-up), at the lowest cost each
database allows.

SQLite answers an indexed look-up in microseconds from its page cache, well under what
handing the query to aiosqlite's thread and back costs; so on SQLite the query runs on
the calling thread, through the sqlite3 module, on a read-only connection that WAL lets
read beside the writer (readers never wait for it). On PostgreSQL it runs on a pool of
its own (PostgresReader), without an ORM session, a transaction or a ping.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Engine, Executable, Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.db.engine import create_sqlite_reader, session_scope


class Reader(Protocol):
    async def rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]: ...

    async def dispose(self) -> None: ...


class SqliteReader:
    def __init__(self, url: str) -> None:
        self.engine: Engine = create_sqlite_reader(url)

    async def rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
        with self.engine.connect() as connection:
            return connection.execute(query, parameters).all()

    async def dispose(self) -> None:
        self.engine.dispose()


class SessionReader:
    """Through an ORM session: for callers that hold only a sessionmaker."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
        async with session_scope(self.sessionmaker) as session:
            result: Sequence[Row[Any]] = (await session.execute(query, parameters)).all()
            return result

    async def dispose(self) -> None:
        pass


class PostgresReader:
    """A look-up is one round trip: autocommit (a lone SELECT needs no transaction, and on
    asyncpg its BEGIN and ROLLBACK are a round trip each) and no ping before each use (the
    pool's pre-ping, another; bench/rcpt.py measures a look-up). A connection PostgreSQL
    dropped (a restart) is found when it fails instead: SQLAlchemy then invalidates the
    pool, and the look-up is tried once more."""

    # Beside the main engine's 10 + 10. No overflow: a connection past the pool is opened
    # for one use and closed (PostgreSQL forks a backend for it, milliseconds); a look-up
    # beyond ten at once waits its turn for one of these instead.
    POOL = {"pool_size": 10, "max_overflow": 0}

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(url, isolation_level="AUTOCOMMIT", **self.POOL)

    async def rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
        try:
            return await self._rows(query, parameters)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            return await self._rows(query, parameters)

    async def _rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
        async with self.engine.connect() as connection:
            result: Sequence[Row[Any]] = (await connection.execute(query, parameters)).all()
            return result

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_reader(engine: AsyncEngine) -> Reader:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "sqlite":
        return SqliteReader(url)
    return PostgresReader(url)
