"""The blocks an RCPT reads (app.services.routes.SENDER_BLOCKS): one small query on
ix_blocks_sender, and none at all for the null sender."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.models import Block
from app.services import aliases, blocks, destinations, domains
from app.services.routes import SENDER_BLOCKS, route, sender_blocks_parameters
from tests.services.test_routes import index_condition, recorded_statements

MANY = 20_000  # enough that PostgreSQL prefers the index to a scan


@pytest.fixture
async def blocked(session: AsyncSession) -> None:
    await domains.create_domain(session, "example.org")
    await destinations.add_verified_destination(session, "me@inbox.example")
    await aliases.create_alias(
        session, "example.org", local_part="shop", destinations=["me@inbox.example"]
    )
    await blocks.create_block(session, "bad.example")


@pytest.mark.usefixtures("blocked")
@pytest.mark.parametrize(("sender", "statements"), [("", 1), ("x@bad.example", 2)])
async def test_route_reads_blocks_only_for_a_sender(
    engine: AsyncEngine, session: AsyncSession, sender: str, statements: int
) -> None:
    await session.connection()  # begin first: SQLite's BEGIN IMMEDIATE is not the lookup
    with recorded_statements(engine) as recorded:
        _, decision = await route(session, "shop@example.org", sender=sender)
    assert (len(recorded), decision.accepted) == (statements, sender == "")


@pytest.mark.usefixtures("blocked")
async def test_sender_blocks_finds_blocks_by_their_sender_index(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    connection = await session.connection()
    await session.execute(insert(Block), [{"sender": f"s{n}.example"} for n in range(MANY)])
    await connection.exec_driver_sql("ANALYZE")
    parameters = sender_blocks_parameters("example.org", "x@mail.bad.example")
    assert parameters is not None
    with recorded_statements(engine) as statements:
        await session.execute(SENDER_BLOCKS, parameters)
    [(statement, bound)] = statements
    if engine.dialect.name == "postgresql":
        result = await connection.exec_driver_sql(f"EXPLAIN {statement}", bound)
        plan = [row[0].strip().removeprefix("->  ") for row in result]
    else:
        result = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", bound)
        plan = [row[3] for row in result]
    assert "sender" in index_condition(plan, "ix_blocks_sender"), plan
