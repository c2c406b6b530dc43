"""Group commit (app.db.group_commit): concurrent callers share transactions, and each is
answered, with its own result, only once the transaction holding its item is committed.

The items are domain names written to the real test database; what is committed is read
back through a second connection, never the writer's. Every test runs on each kind of
Transactions the database has: SessionTransactions, and on SQLite ThreadTransactions
(the whole batch in one thread, as `mailroute serve` commits there).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, event, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db.engine import create_engine, create_sqlite_writer, session_scope
from app.db.group_commit import GroupCommit
from app.db.models import Destination, Domain
from app.db.transactions import SessionTransactions, ThreadTransactions, Transactions

T = TypeVar("T")
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


@pytest.fixture(params=["session", "thread"])
def transactions(
    request: pytest.FixtureRequest,
    database_url: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Iterator[Held]:
    if request.param == "session":
        yield Held(SessionTransactions(sessionmaker), engine.sync_engine)
        return
    if engine.dialect.name != "sqlite":
        pytest.skip("ThreadTransactions is for SQLite")
    threaded = ThreadTransactions(create_sqlite_writer(database_url))
    try:
        yield Held(threaded, threaded.engine)
    finally:
        threaded.close()


class Held:
    """Transactions that say when a batch begins and can hold the first one back, so a
    test can queue callers behind a commit in progress; it counts the commits."""

    def __init__(self, inner: Transactions, engine: Engine) -> None:
        self.inner = inner
        self.engine = engine
        self.hold: asyncio.Event | None = None  # when set up, the first batch waits for it
        self.writing = asyncio.Event()
        self.started = 0
        self.before: list[Callable[[], Awaitable[None]]] = []  # run as each batch begins

    async def run(self, work: Callable[[Session], T]) -> T:
        self.started += 1
        self.writing.set()
        for hook in self.before:
            await hook()
        if self.hold is not None and self.started == 1:
            await asyncio.wait_for(self.hold.wait(), STEP)
        return await self.inner.run(work)

    @contextmanager
    def counted_commits(self) -> Iterator[list[int]]:
        """One entry per transaction committed inside the block."""
        commits: list[int] = []

        def record(_connection: Any) -> None:
            commits.append(1)

        event.listen(self.engine, "commit", record)
        try:
            yield commits
        finally:
            event.remove(self.engine, "commit", record)


class Recorder:
    """A ``write`` that stores one domain per item (and, first, a destination named after
    it, so a failed item would leave a trace) and answers each item's name as the database
    returned it; it records the batches it saw."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, session: Session, names: list[str]) -> list[str]:
        self.batches.append(list(names))
        session.execute(insert(Destination), [{"email": f"log@{n}"} for n in names])
        returned = session.scalars(
            insert(Domain).returning(Domain.name, sort_by_parameter_order=True),
            [{"name": n} for n in names],
        )
        return list(returned)


def names(count: int, prefix: str = "d") -> list[str]:
    return [f"{prefix}{n}.example" for n in range(count)]


async def test_group_commit_puts_concurrent_items_in_fewer_transactions(
    transactions: Held,
) -> None:
    write = Recorder()
    commits = GroupCommit(transactions, write)
    items = names(20)

    with transactions.counted_commits() as committed:
        results = await asyncio.wait_for(asyncio.gather(*map(commits.run, items)), STEP)

    assert results == items  # each caller got its own item's result, in the callers' order
    assert sorted(n for batch in write.batches for n in batch) == sorted(items)
    assert len(committed) == len(write.batches) < len(items)


async def test_group_commit_takes_items_arriving_during_a_commit_into_the_next(
    transactions: Held,
) -> None:
    write = Recorder()
    transactions.hold = asyncio.Event()
    commits = GroupCommit(transactions, write)
    first = asyncio.ensure_future(commits.run("first.example"))
    await asyncio.wait_for(transactions.writing.wait(), STEP)
    later = [asyncio.ensure_future(commits.run(n)) for n in names(5)]
    await asyncio.sleep(0.05)  # they queue behind the held commit

    with transactions.counted_commits() as committed:
        transactions.hold.set()
        results = await asyncio.wait_for(asyncio.gather(first, *later), STEP)

    assert results == ["first.example", *names(5)]
    assert write.batches == [["first.example"], names(5)]
    assert len(committed) == 2


async def test_group_commit_respects_max_batch(transactions: Held) -> None:
    write = Recorder()
    commits = GroupCommit(transactions, write, max_batch=3)
    items = names(10)

    with transactions.counted_commits() as committed:
        results = await asyncio.wait_for(asyncio.gather(*map(commits.run, items)), STEP)

    assert results == items
    assert [len(batch) for batch in write.batches] == [3, 3, 3, 1]
    assert len(committed) == 4


async def test_group_commit_answers_only_after_the_commit(
    transactions: Held, observer: Observer
) -> None:
    seen_at_write: list[set[str]] = []
    seen_by_caller: dict[str, set[str]] = {}
    recorder = Recorder()

    async def look() -> None:
        seen_at_write.append(await observer.names())

    transactions.before.append(look)
    commits = GroupCommit(transactions, recorder, max_batch=4)

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
    sessionmaker: async_sessionmaker[AsyncSession], transactions: Held, observer: Observer
) -> None:
    async with session_scope(sessionmaker) as session:
        session.add(Domain(name="taken.example"))
    write = Recorder()
    commits = GroupCommit(transactions, write)
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
    sessionmaker: async_sessionmaker[AsyncSession], transactions: Held, observer: Observer
) -> None:
    async with session_scope(sessionmaker) as session:
        session.add(Domain(name="taken.example"))
    write = Recorder()
    commits = GroupCommit(transactions, write)

    with pytest.raises(IntegrityError):
        await asyncio.wait_for(commits.run("taken.example"), STEP)

    assert write.batches == [["taken.example"]]  # alone already: no second try
    assert await observer.emails() == set()


async def test_group_commit_cancelled_caller_does_not_cancel_the_commit(
    transactions: Held, observer: Observer
) -> None:
    write = Recorder()
    transactions.hold = asyncio.Event()
    commits = GroupCommit(transactions, write)
    items = names(4)
    # The first caller is the one whose run() started the committer.
    callers = [asyncio.ensure_future(commits.run(n)) for n in items]
    await asyncio.wait_for(transactions.writing.wait(), STEP)

    callers[0].cancel()
    callers[2].cancel()
    transactions.hold.set()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), STEP)

    assert [type(r) for r in results] == [asyncio.CancelledError, str, asyncio.CancelledError, str]
    assert (results[1], results[3]) == (items[1], items[3])
    assert await observer.names() == set(items)


async def test_group_commit_keeps_working_after_a_cancelled_caller(
    transactions: Held, observer: Observer
) -> None:
    write = Recorder()
    transactions.hold = asyncio.Event()
    commits = GroupCommit(transactions, write)
    gone = asyncio.ensure_future(commits.run("gone.example"))
    await asyncio.wait_for(transactions.writing.wait(), STEP)
    gone.cancel()
    transactions.hold.set()
    with pytest.raises(asyncio.CancelledError):
        await gone

    assert await asyncio.wait_for(commits.run("next.example"), STEP) == "next.example"
    assert await observer.names() == {"gone.example", "next.example"}
