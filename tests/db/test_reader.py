"""Readers for the RCPT look-up (app.db.reader): the rows a session would get, a SQLite
reader that cannot write, and reads that neither lag behind nor wait for the writer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Row, insert, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import create_engine, session_scope
from app.db.models import Domain
from app.db.reader import PostgresReader, Reader, SessionReader, SqliteReader, create_reader
from app.routing import CATCH_ALL_KEY, Action, parse_address
from app.services import aliases, destinations, domains
from app.services.routes import DOMAIN_VIEW, domain_view, domain_view_parameters

ME = "me@inbox.example"
WORK = "work@inbox.example"
READ_BOUND = 1.0  # seconds: a read that waits for the writer takes its whole transaction
HELD = 3.0  # seconds the writer keeps its transaction open in the blocking test

ADDRESSES = [
    "shop@example.org",
    "Shop+news@example.org",
    "nobody@example.org",
    "spam@example.org",
    "anyone@other.example",
    "shop@foreign.example",
]


@pytest.fixture
async def routed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """example.org: shop to WORK and ME, spam dropped, a catch-all to ME; other.example."""
    async with session_scope(sessionmaker) as session:
        await domains.create_domain(session, "example.org")
        await domains.create_domain(session, "other.example", subaddressing=False)
        for email in (WORK, ME):
            await destinations.add_verified_destination(session, email)
        await aliases.create_alias(
            session, "example.org", local_part="shop", destinations=[WORK, ME]
        )
        await aliases.create_alias(session, "example.org", local_part="spam", action=Action.DROP)
        await aliases.put_catch_all(
            session, "example.org", enabled=True, action=Action.FORWARD, destinations=[ME]
        )


@pytest.fixture(params=["create_reader", "SessionReader"])
async def reader(
    request: pytest.FixtureRequest,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Reader]:
    made = (
        create_reader(engine) if request.param == "create_reader" else SessionReader(sessionmaker)
    )
    yield made
    await made.dispose()


@pytest.fixture
async def engine_reader(engine: AsyncEngine) -> AsyncIterator[Reader]:
    made = create_reader(engine)
    yield made
    await made.dispose()


def as_set(rows: Sequence[Row[Any]]) -> list[tuple[Any, ...]]:
    """Rows in a stable order (the query has no ORDER BY)."""
    return sorted((tuple(row) for row in rows), key=repr)


async def session_rows(
    sessionmaker: async_sessionmaker[AsyncSession], address: str
) -> Sequence[Row[Any]]:
    async with sessionmaker() as session:
        parameters = domain_view_parameters(parse_address(address))
        return (await session.execute(DOMAIN_VIEW, parameters)).all()


async def reader_rows(reader: Reader, address: str) -> Sequence[Row[Any]]:
    return await reader.rows(DOMAIN_VIEW, domain_view_parameters(parse_address(address)))


def test_create_reader_picks_the_reader_for_the_database(engine: AsyncEngine) -> None:
    expected = SqliteReader if engine.dialect.name == "sqlite" else PostgresReader
    assert type(create_reader(engine)) is expected


@pytest.mark.parametrize("address", ADDRESSES)
async def test_reader_returns_the_rows_a_session_returns(
    sessionmaker: async_sessionmaker[AsyncSession], routed: None, reader: Reader, address: str
) -> None:
    expected = await session_rows(sessionmaker, address)
    rows = await reader_rows(reader, address)

    assert as_set(rows) == as_set(expected)
    assert domain_view(rows) == domain_view(expected)


async def test_reader_rows_hold_the_domain_and_its_rules(routed: None, reader: Reader) -> None:
    view = domain_view(await reader_rows(reader, "shop+news@example.org"))

    assert view is not None
    assert (view.name, sorted(view.rules)) == ("example.org", sorted([CATCH_ALL_KEY, "shop"]))
    assert [d.email for d in view.rules["shop"].destinations] == [ME, WORK]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_reader_cannot_write(engine_reader: Reader) -> None:
    assert (await engine_reader.rows(text("PRAGMA query_only"), {}))[0][0] == 1
    with pytest.raises(OperationalError, match="readonly"):
        await engine_reader.rows(
            text(
                "INSERT INTO domains (name, subaddressing, created_at, updated_at)"
                " VALUES ('x.example', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP) RETURNING id"
            ),
            {},
        )


async def test_reader_sees_a_commit_at_once(
    sessionmaker: async_sessionmaker[AsyncSession], engine_reader: Reader
) -> None:
    assert await reader_rows(engine_reader, "a@new.example") == []  # its connection is open
    async with session_scope(sessionmaker) as session:
        await domains.create_domain(session, "new.example")

    [row] = await reader_rows(engine_reader, "a@new.example")
    assert row.name == "new.example"


def read_in_thread(reader: Reader, address: str) -> Sequence[Row[Any]]:
    """The SQLite reader reads on the calling thread: off the event loop here, so a read
    that waits for the writer's lock cannot stall the test (and the writer) with it."""
    return asyncio.run(reader_rows(reader, address))


async def test_reader_does_not_wait_for_an_open_write_transaction(
    engine: AsyncEngine, engine_reader: Reader, routed: None
) -> None:
    async with engine.connect() as writer:
        await writer.begin()  # on SQLite: BEGIN IMMEDIATE, the write lock
        await writer.execute(insert(Domain).values(name="uncommitted.example"))
        started = time.monotonic()
        if isinstance(engine_reader, SqliteReader):
            reading = asyncio.ensure_future(
                asyncio.to_thread(read_in_thread, engine_reader, "shop@example.org")
            )
        else:
            reading = asyncio.ensure_future(reader_rows(engine_reader, "shop@example.org"))
        done, _ = await asyncio.wait({reading}, timeout=HELD)
        waited = time.monotonic() - started
        unseen = await reader_rows(engine_reader, "x@uncommitted.example") if done else None
        await writer.rollback()
    rows = await asyncio.wait_for(reading, 60)  # released: it finishes either way

    assert waited < READ_BOUND, f"the read waited {waited:.1f} s for the writer"
    assert {row.name for row in rows} == {"example.org"}
    assert unseen == []


@pytest.mark.postgres
async def test_postgres_reader_survives_its_connections_being_dropped(postgres_url: str) -> None:
    # No ping before each use: a connection PostgreSQL dropped (a restart, an idle
    # timeout) fails, the pool is invalidated, and the look-up is tried once more.
    reader = PostgresReader(postgres_url)
    other = create_engine(postgres_url)
    try:
        query = text("SELECT pg_backend_pid()")
        [(first_backend,)] = await reader.rows(query, {})
        async with other.connect() as connection:
            ended = await connection.scalar(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": first_backend}
            )
        assert ended is True
        [(second_backend,)] = await reader.rows(query, {})
        assert second_backend != first_backend
    finally:
        await reader.dispose()
        await other.dispose()
