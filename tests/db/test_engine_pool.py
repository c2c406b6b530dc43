"""SQLite's writer pool: one connection per process, so concurrent units of work queue for
it in turn instead of meeting in SQLite's busy handler (or failing with "database is
locked")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.db.models import Destination, Domain

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

WRITERS = 40
STEP = 30.0


@pytest.fixture
async def fresh_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine that has not connected yet."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def write_one(engine: AsyncEngine, number: int, log: list[tuple[str, int]]) -> None:
    """A unit of work of a few statements with a pause in the middle, as a real one has."""
    async with session_scope(create_sessionmaker(engine)) as session:
        await session.execute(insert(Domain).values(name=f"d{number}.example"))
        log.append(("in", number))
        await asyncio.sleep(0.002)
        await session.execute(insert(Destination).values(email=f"me{number}@inbox.example"))
        log.append(("out", number))


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


async def test_engine_sqlite_concurrent_writers_all_succeed(fresh_engine: AsyncEngine) -> None:
    log: list[tuple[str, int]] = []

    results = await asyncio.wait_for(
        asyncio.gather(
            *(write_one(fresh_engine, n, log) for n in range(WRITERS)), return_exceptions=True
        ),
        STEP,
    )

    assert [r for r in results if r is not None] == []
    assert (await count(fresh_engine, Domain), await count(fresh_engine, Destination)) == (
        WRITERS,
        WRITERS,
    )


async def test_engine_sqlite_concurrent_writers_share_one_connection(
    fresh_engine: AsyncEngine,
) -> None:
    connections: list[int] = []

    @event.listens_for(fresh_engine.sync_engine, "connect")
    def connected(dbapi_connection: Any, _record: Any) -> None:
        connections.append(id(dbapi_connection))

    await asyncio.wait_for(
        asyncio.gather(*(write_one(fresh_engine, n, []) for n in range(WRITERS))), STEP
    )

    assert len(connections) == 1


async def test_engine_sqlite_session_scopes_take_turns(fresh_engine: AsyncEngine) -> None:
    log: list[tuple[str, int]] = []

    await asyncio.wait_for(
        asyncio.gather(*(write_one(fresh_engine, n, log) for n in range(WRITERS))), STEP
    )

    # Each unit of work runs from its first statement to its commit before the next starts.
    pairs = [log[i : i + 2] for i in range(0, len(log), 2)]
    assert all(first[1] == second[1] for first, second in pairs), log
    assert [kind for kind, _ in log] == ["in", "out"] * WRITERS


async def test_engine_sqlite_second_session_waits_for_the_first(
    fresh_engine: AsyncEngine,
) -> None:
    sessionmaker = create_sessionmaker(fresh_engine)
    first_in = asyncio.Event()
    release = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with session_scope(sessionmaker) as session:
            await session.execute(insert(Domain).values(name="first.example"))
            first_in.set()
            await asyncio.wait_for(release.wait(), STEP)
            order.append("first commits")

    async def second(session: AsyncSession) -> None:
        await session.execute(insert(Domain).values(name="second.example"))
        order.append("second writes")

    async def second_scope() -> None:
        async with session_scope(sessionmaker) as session:
            await second(session)

    one = asyncio.ensure_future(first())
    await asyncio.wait_for(first_in.wait(), STEP)
    two = asyncio.ensure_future(second_scope())
    await asyncio.sleep(0.2)
    waiting = list(order)
    release.set()
    await asyncio.wait_for(asyncio.gather(one, two), STEP)

    assert waiting == []
    assert order == ["first commits", "second writes"]
    assert await count(fresh_engine, Domain) == 2
