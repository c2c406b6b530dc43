"""Fetching the rules that may decide an address (app.services.routes.load_domain_view)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Domain, Rule
from app.routing import (
    CATCH_ALL_KEY,
    Action,
    DestinationView,
    DomainView,
    RuleKind,
    RuleView,
    parse_address,
)
from app.services import aliases, domains
from app.services.destinations import (
    MailIdentity,
    add_verified_destination,
    create_destination,
)
from app.services.routes import load_domain_view
from tests.fakes import FakeResolver

DOMAIN = "example.org"
ME = "me@inbox.example"
WORK = "work@inbox.example"
NEW = "new@inbox.example"

Statement = tuple[str, Any]


@contextmanager
def recorded_statements(engine: AsyncEngine) -> Iterator[list[Statement]]:
    """Every statement sent to the database inside the block, with its parameters."""
    statements: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@pytest.fixture
async def rules(
    sessionmaker: async_sessionmaker[AsyncSession], resolver: FakeResolver, identity: MailIdentity
) -> dict[str, int]:
    """example.org with shop (to ME and WORK), pending (to NEW), spam (drop), a catch-all;
    other.example with its own shop. Answers each rule's id by local part."""
    async with session_scope(sessionmaker) as session:
        await domains.create_domain(session, DOMAIN)
        await domains.create_domain(session, "other.example", subaddressing=False)
        for email in (ME, WORK):
            await add_verified_destination(session, email)
        await create_destination(session, NEW, resolver=resolver, identity=identity)
        created = [
            await aliases.create_alias(session, DOMAIN, local_part="shop", destinations=[WORK, ME]),
            await aliases.create_alias(session, DOMAIN, local_part="pending", destinations=[NEW]),
            await aliases.create_alias(session, DOMAIN, local_part="spam", action=Action.DROP),
            await aliases.put_catch_all(
                session, DOMAIN, enabled=True, action=Action.FORWARD, destinations=[ME]
            ),
        ]
        await aliases.create_alias(session, "other.example", local_part="shop", destinations=[ME])
        return {rule.local_part: rule.id for rule in created}


def shop(ids: dict[str, int]) -> RuleView:
    return RuleView(
        id=ids["shop"],
        kind=RuleKind.ALIAS,
        local_part="shop",
        action=Action.FORWARD,
        destinations=(DestinationView(ME, True), DestinationView(WORK, True)),
    )


def catch_all(ids: dict[str, int]) -> RuleView:
    return RuleView(
        id=ids[CATCH_ALL_KEY],
        kind=RuleKind.CATCH_ALL,
        local_part=CATCH_ALL_KEY,
        action=Action.FORWARD,
        destinations=(DestinationView(ME, True),),
    )


async def test_load_domain_view_returns_none_for_unknown_domain(
    session: AsyncSession, rules: dict[str, int]
) -> None:
    assert await load_domain_view(session, parse_address("shop@foreign.example")) is None


async def test_load_domain_view_returns_exact_rule_and_catch_all(
    session: AsyncSession, rules: dict[str, int]
) -> None:
    view = await load_domain_view(session, parse_address("Shop@example.org"))
    assert view == DomainView(DOMAIN, True, {"shop": shop(rules), CATCH_ALL_KEY: catch_all(rules)})


async def test_load_domain_view_returns_base_rule_of_subaddress(
    session: AsyncSession, rules: dict[str, int]
) -> None:
    view = await load_domain_view(session, parse_address("shop+news@example.org"))
    assert view == DomainView(DOMAIN, True, {"shop": shop(rules), CATCH_ALL_KEY: catch_all(rules)})


async def test_load_domain_view_marks_pending_destination_unverified(
    session: AsyncSession, rules: dict[str, int]
) -> None:
    view = await load_domain_view(session, parse_address("pending@example.org"))
    assert view is not None
    assert view.rules["pending"].destinations == (DestinationView(NEW, False),)


async def test_load_domain_view_returns_drop_rule_without_destinations(
    session: AsyncSession, rules: dict[str, int]
) -> None:
    view = await load_domain_view(session, parse_address("spam@example.org"))
    assert view is not None
    assert view.rules["spam"] == RuleView(
        id=rules["spam"], kind=RuleKind.ALIAS, local_part="spam", action=Action.DROP
    )


async def test_load_domain_view_returns_served_domain_without_matching_rule(
    session: AsyncSession, rules: dict[str, int]
) -> None:
    view = await load_domain_view(session, parse_address("nobody@other.example"))
    assert view == DomainView("other.example", False, {})


async def test_load_domain_view_returns_only_the_address_domain_rules(
    session: AsyncSession, rules: dict[str, int]
) -> None:
    view = await load_domain_view(session, parse_address("shop@other.example"))
    assert view is not None
    assert (view.name, list(view.rules)) == ("other.example", ["shop"])


ADDRESSES = [
    "shop@example.org",
    "shop+news@example.org",
    "nobody@example.org",
    "nobody@other.example",
    "shop@foreign.example",
]


@pytest.mark.parametrize("address", ADDRESSES)
async def test_load_domain_view_issues_one_statement(
    engine: AsyncEngine, session: AsyncSession, rules: dict[str, int], address: str
) -> None:
    await session.connection()  # begin first: SQLite's BEGIN IMMEDIATE is not the lookup
    with recorded_statements(engine) as statements:
        await load_domain_view(session, parse_address(address))
    assert len(statements) == 1, statements


# The unique constraints' indexes: PostgreSQL uses the constraint names, SQLite its own.
DOMAIN_INDEX = {"postgresql": "uq_domains_name", "sqlite": "sqlite_autoindex_domains_1"}
RULE_INDEX = {"postgresql": "uq_rules_domain_id", "sqlite": "sqlite_autoindex_rules_1"}
MANY = 2_000


@pytest.fixture
async def plan(engine: AsyncEngine, session: AsyncSession, rules: dict[str, int]) -> list[str]:
    """The query plan of one lookup among many domains and rules, with fresh statistics
    (all rolled back afterwards): with a handful of rows a full scan would rightly win."""
    connection = await session.connection()
    await session.execute(insert(Domain), [{"name": f"d{n}.example"} for n in range(MANY)])
    domain_id = await session.scalar(select(Domain.id).where(Domain.name == DOMAIN))
    await session.execute(
        insert(Rule), [{"domain_id": domain_id, "local_part": f"a{n}"} for n in range(MANY)]
    )
    await connection.exec_driver_sql("ANALYZE")
    with recorded_statements(engine) as statements:
        await load_domain_view(session, parse_address("shop+news@example.org"))
    [(statement, parameters)] = statements
    if engine.dialect.name == "postgresql":
        result = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return [row[0].strip().removeprefix("->  ") for row in result]
    result = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
    return [row[3] for row in result]


def index_condition(plan: list[str], index: str) -> str:
    """The condition ``index`` is searched with, as the plan shows it."""
    for number, line in enumerate(plan):
        if re.search(rf"(Scan using|Scan on|USING INDEX) {index}\b", line):
            if "USING INDEX" in line:  # SQLite: "SEARCH t USING INDEX i (a=? AND b=?)"
                return line.partition(index)[2]
            following = plan[number + 1] if number + 1 < len(plan) else ""
            return following if following.startswith("Index Cond:") else ""
    raise AssertionError(f"{index} is not used:\n" + "\n".join(plan))


async def test_load_domain_view_finds_the_domain_by_its_unique_index(
    engine: AsyncEngine, plan: list[str]
) -> None:
    assert "name" in index_condition(plan, DOMAIN_INDEX[engine.dialect.name])


async def test_load_domain_view_finds_rules_by_domain_and_local_part(
    engine: AsyncEngine, plan: list[str]
) -> None:
    condition = index_condition(plan, RULE_INDEX[engine.dialect.name])
    assert ("domain_id" in condition, "local_part" in condition) == (True, True), plan
