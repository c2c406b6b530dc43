"""route (app.services.routes): the RCPT decision from any source of DOMAIN_VIEW rows (the
SMTP server's reader) is the API's decision through the ORM session, for every address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.reader import Reader, SessionReader, create_reader
from app.routing import Action, MatchKind, Outcome, Refusal
from app.services import aliases, destinations, domains
from app.services.routes import route

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ME = "me@inbox.example"
WORK = "work@inbox.example"
ZED = "zed@inbox.example"
ANN = "ann@inbox.example"

# address -> (outcome, matched by, destinations, refusal)
EXPECTED: dict[str, tuple[Outcome, MatchKind | None, tuple[str, ...], Refusal | None]] = {
    "shop@example.org": (Outcome.FORWARD, MatchKind.EXACT, (ME, WORK), None),
    "Shop@Example.ORG": (Outcome.FORWARD, MatchKind.EXACT, (ME, WORK), None),
    "shop+news@example.org": (Outcome.FORWARD, MatchKind.SUBADDRESS, (ME, WORK), None),
    "anyone@example.org": (Outcome.FORWARD, MatchKind.CATCH_ALL, (ME,), None),
    "spam@example.org": (Outcome.DROP, MatchKind.EXACT, (), None),
    "old@example.org": (Outcome.REFUSE, MatchKind.EXACT, (), Refusal.RULE_INACTIVE),
    "team@plain.example": (Outcome.FORWARD, MatchKind.EXACT, (ANN, ME, ZED), None),
    "team+x@plain.example": (Outcome.REFUSE, None, (), Refusal.UNKNOWN_ADDRESS),
    "nobody@plain.example": (Outcome.REFUSE, None, (), Refusal.UNKNOWN_ADDRESS),
    "shop@foreign.example": (Outcome.REFUSE, None, (), Refusal.DOMAIN_NOT_SERVED),
}


@pytest.fixture
async def routed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """example.org (subaddressing): shop, spam (drop), old (disabled), a catch-all;
    plain.example (no subaddressing, no catch-all): team to three inboxes, given unsorted."""
    async with session_scope(sessionmaker) as session:
        await domains.create_domain(session, "example.org")
        await domains.create_domain(session, "plain.example", subaddressing=False)
        for email in (ZED, WORK, ME, ANN):
            await destinations.add_verified_destination(session, email)
        await aliases.create_alias(
            session, "example.org", local_part="shop", destinations=[WORK, ME]
        )
        await aliases.create_alias(session, "example.org", local_part="spam", action=Action.DROP)
        await aliases.create_alias(
            session, "example.org", local_part="old", destinations=[ME], enabled=False
        )
        await aliases.put_catch_all(
            session, "example.org", enabled=True, action=Action.FORWARD, destinations=[ME]
        )
        await aliases.create_alias(
            session, "plain.example", local_part="team", destinations=[ZED, ME, ANN]
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


@pytest.mark.parametrize("address", list(EXPECTED))
async def test_route_from_the_reader_decides_as_from_the_session(
    session: AsyncSession, routed: None, reader: Reader, address: str
) -> None:
    parsed, decision = await route(reader, address, NOW)

    assert (parsed, decision) == await route(session, address, NOW)
    assert (
        decision.outcome,
        decision.matched_by,
        decision.destinations,
        decision.refusal,
    ) == EXPECTED[address]


async def test_route_reads_the_rule_as_stored(
    session: AsyncSession, routed: None, reader: Reader
) -> None:
    _, decision = await route(reader, "shop+news@example.org", NOW)

    assert decision.rule is not None
    assert (decision.rule.local_part, decision.rule.enabled, decision.rule.message_count) == (
        "shop",
        True,
        0,
    )


async def test_route_sees_an_alias_disabled_after_a_first_look(
    sessionmaker: async_sessionmaker[AsyncSession], routed: None, reader: Reader
) -> None:
    before = (await route(reader, "shop@example.org", NOW))[1]
    async with session_scope(sessionmaker) as session:
        await aliases.update_alias(session, "example.org", "shop", {"enabled": False})

    after = (await route(reader, "shop@example.org", NOW))[1]

    assert (before.outcome, after.outcome, after.refusal) == (
        Outcome.FORWARD,
        Outcome.REFUSE,
        Refusal.RULE_INACTIVE,
    )
