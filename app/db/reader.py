"""Read-only queries on the SMTP hot path (the RCPT look-up), at the lowest cost each
database allows.

SQLite answers an indexed look-up in microseconds from its page cache, well under what
handing the query to aiosqlite's thread and back costs; so on SQLite the query runs on
the calling thread, through the sqlite3 module, on a read-only connection that WAL lets
read beside the writer (readers never wait for it). Elsewhere it runs on a connection of
the async engine, without an ORM session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Engine, Executable, Row
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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


class EngineReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
        async with self.engine.connect() as connection:
            result: Sequence[Row[Any]] = (await connection.execute(query, parameters)).all()
            return result

    async def dispose(self) -> None:
        pass  # the engine is its owner's


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


def create_reader(engine: AsyncEngine) -> Reader:
    if engine.dialect.name == "sqlite":
        return SqliteReader(engine.url.render_as_string(hide_password=False))
    return EngineReader(engine)
