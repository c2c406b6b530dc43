"""Group commit (app.db.group_commit): concurrent callers share transactions, and each is
answered, with its own result, only once the transaction holding its item is committed.

The items are domain names written to the real test database; what is committed is read
back through a second connection, never the writer's.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_engine, session_scope
from app.db.group_commit import GroupCommit
from app.db.models import Destination, Domain

STEP = 5.0  # seconds any one await here may take on a loaded machine


class Observer:
    """A connection of its own on the test database: what is committed, as any other
    process would see it. SQLite through the sqlite3 module (WAL lets it read beside the
    writer), PostgreSQL through an engine without a pool."""

    def __init__(self, database_url: str) -> None:
        self.url = make_url(database_url)
        self.engine = (
            None
            if self.url.get_backend_name() == "sqlite"
            else create_engine(database_url, pooled=False)
        )

    async def names(self) -> set[str]:
        """The domain names committed."""
        if self.engine is None:
            with sqlite3.connect(str(self.url.database), isolation_level=None) as connection:
                return {row[0] for row in connection.execute("SELECT name FROM domains")}
        async with self.engine.connect() as connection:
            return set((await connection.scalars(select(Domain.name))).all())

    async def emails(self) -> set[str]:
        """The destination addresses committed."""
        if self.engine is None:
            with sqlite3.connect(str(self.url.database), isolation_level=None) as connection:
                return {row[0] for row in connection.execute("SELECT email FROM destinations")}
        async with self.engine.connect() as connection:
            return set((await connection.scalars(select(Destination.email))).all())

    async def dispose(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()


@pytest.fixture
async def observer(database_url: str, engine: AsyncEngine) -> AsyncIterator[Observer]:
    # After ``engine``: on PostgreSQL it empties the tables first.
    observer = Observer(database_url)
    yield observer
    await observer.dispose()


@contextmanager
def counted_commits(engine: AsyncEngine) -> Iterator[list[int]]:
    """One entry per transaction committed on ``engine`` inside the block."""
    commits: list[int] = []

    def record(_connection: Any) -> None:
        commits.append(1)

    event.listen(engine.sync_engine, "commit", record)
    try:
        yield commits
    finally:
        event.remove(engine.sync_engine, "commit", record)


class Recorder:
    """A ``write`` that stores one domain per item (and, first, a destination named after
    it, so a failed item would leave a trace) and answers each item's name as the database
    returned it; it records the batches it saw."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.hold: asyncio.Event | None = None  # when set up, the first write waits for it
        self.writing = asyncio.Event()

    async def __call__(self, session: AsyncSession, names: list[str]) -> list[str]:
        self.batches.append(list(names))
        self.writing.set()
        if self.hold is not None and len(self.batches) == 1:
            await asyncio.wait_for(self.hold.wait(), STEP)
        await session.execute(insert(Destination), [{"email": f"log@{n}"} for n in names])
        returned = await session.scalars(
            insert(Domain).returning(Domain.name, sort_by_parameter_order=True),
            [{"name": n} for n in names],
        )
        return list(returned)


def names(count: int, prefix: str = "d") -> list[str]:
    return [f"{prefix}{n}.example" for n in range(count)]


async def test_group_commit_puts_concurrent_items_in_fewer_transactions(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    write = Recorder()
    commits = GroupCommit(sessionmaker, write)
    items = names(20)

    with counted_commits(engine) as committed:
        results = await asyncio.wait_for(asyncio.gather(*map(commits.run, items)), STEP)

    assert results == items  # each caller got its own item's result, in the callers' order
    assert sorted(n for batch in write.batches for n in batch) == sorted(items)
    assert len(committed) == len(write.batches) < len(items)


async def test_group_commit_takes_items_arriving_during_a_commit_into_the_next(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    write = Recorder()
    write.hold = asyncio.Event()
    commits = GroupCommit(sessionmaker, write)
    first = asyncio.ensure_future(commits.run("first.example"))
    await asyncio.wait_for(write.writing.wait(), STEP)
    later = [asyncio.ensure_future(commits.run(n)) for n in names(5)]
    await asyncio.sleep(0.05)  # they queue behind the held commit

    with counted_commits(engine) as committed:
        write.hold.set()
        results = await asyncio.wait_for(asyncio.gather(first, *later), STEP)

    assert results == ["first.example", *names(5)]
    assert write.batches == [["first.example"], names(5)]
    assert len(committed) == 2


async def test_group_commit_respects_max_batch(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    write = Recorder()
    commits = GroupCommit(sessionmaker, write, max_batch=3)
    items = names(10)

    with counted_commits(engine) as committed:
        results = await asyncio.wait_for(asyncio.gather(*map(commits.run, items)), STEP)

    assert results == items
    assert [len(batch) for batch in write.batches] == [3, 3, 3, 1]
    assert len(committed) == 4


async def test_group_commit_answers_only_after_the_commit(
    sessionmaker: async_sessionmaker[AsyncSession], observer: Observer
) -> None:
    seen_at_write: list[set[str]] = []
    seen_by_caller: dict[str, set[str]] = {}
    recorder = Recorder()

    async def write(session: AsyncSession, items: list[str]) -> list[str]:
        seen_at_write.append(await observer.names())
        return await recorder(session, items)

    commits = GroupCommit(sessionmaker, write, max_batch=4)

    async def caller(name: str) -> None:
        result = await commits.run(name)
        seen_by_caller[result] = await observer.names()

    items = names(10)
    await asyncio.wait_for(asyncio.gather(*map(caller, items)), STEP)

    for name, seen in seen_by_caller.items():
        assert name in seen, f"{name} was answered before it was committed"
    for number, (batch, seen) in enumerate(zip(recorder.batches, seen_at_write, strict=True)):
        earlier = {n for b in recorder.batches[:number] for n in b}
        assert (earlier <= seen, seen & set(batch)) == (True, set())


async def test_group_commit_failing_item_fails_alone(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], observer: Observer
) -> None:
    async with session_scope(sessionmaker) as session:
        session.add(Domain(name="taken.example"))
    write = Recorder()
    commits = GroupCommit(sessionmaker, write)
    items = ["a.example", "taken.example", "b.example"]

    results = await asyncio.wait_for(
        asyncio.gather(*map(commits.run, items), return_exceptions=True), STEP
    )

    assert (results[0], results[2]) == ("a.example", "b.example")
    assert isinstance(results[1], IntegrityError)
    assert write.batches == [items, ["a.example"], ["taken.example"], ["b.example"]]
    assert await observer.names() == {"a.example", "taken.example", "b.example"}
    # The failed item's own first write (its destination) was rolled back with it.
    assert await observer.emails() == {"log@a.example", "log@b.example"}


async def test_group_commit_single_failing_item_gets_its_exception(
    sessionmaker: async_sessionmaker[AsyncSession], observer: Observer
) -> None:
    async with session_scope(sessionmaker) as session:
        session.add(Domain(name="taken.example"))
    write = Recorder()
    commits = GroupCommit(sessionmaker, write)

    with pytest.raises(IntegrityError):
        await asyncio.wait_for(commits.run("taken.example"), STEP)

    assert write.batches == [["taken.example"]]  # alone already: no second try
    assert await observer.emails() == set()


async def test_group_commit_cancelled_caller_does_not_cancel_the_commit(
    sessionmaker: async_sessionmaker[AsyncSession], observer: Observer
) -> None:
    write = Recorder()
    write.hold = asyncio.Event()
    commits = GroupCommit(sessionmaker, write)
    items = names(4)
    # The first caller is the one whose run() started the committer.
    callers = [asyncio.ensure_future(commits.run(n)) for n in items]
    await asyncio.wait_for(write.writing.wait(), STEP)

    callers[0].cancel()
    callers[2].cancel()
    write.hold.set()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), STEP)

    assert [type(r) for r in results] == [asyncio.CancelledError, str, asyncio.CancelledError, str]
    assert (results[1], results[3]) == (items[1], items[3])
    assert await observer.names() == set(items)


async def test_group_commit_keeps_working_after_a_cancelled_caller(
    sessionmaker: async_sessionmaker[AsyncSession], observer: Observer
) -> None:
    write = Recorder()
    write.hold = asyncio.Event()
    commits = GroupCommit(sessionmaker, write)
    gone = asyncio.ensure_future(commits.run("gone.example"))
    await asyncio.wait_for(write.writing.wait(), STEP)
    gone.cancel()
    write.hold.set()
    with pytest.raises(asyncio.CancelledError):
        await gone

    assert await asyncio.wait_for(commits.run("next.example"), STEP) == "next.example"
    assert await observer.names() == {"gone.example", "next.example"}
