"""GET /v1/route: the routing decision for an address, as the SMTP server would make it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Rule
from app.services import routes
from app.services.destinations import add_verified_destination

DOMAIN = "example.org"
ALIASES = f"/v1/domains/{DOMAIN}/aliases"
CATCH_ALL = f"/v1/domains/{DOMAIN}/catch-all"
ME = "me@inbox.example"
WORK = "work@inbox.example"
NEW = "new@inbox.example"


@pytest.fixture
async def domain(client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """example.org with verified ME and WORK, and pending NEW, as destinations."""
    response = await client.post("/v1/domains", json={"name": DOMAIN})
    assert response.status_code == 201, response.text
    async with session_scope(sessionmaker) as session:
        for email in (ME, WORK):
            await add_verified_destination(session, email)
    response = await client.post("/v1/destinations", json={"email": NEW})
    assert response.status_code == 201, response.text
    return DOMAIN


async def add_alias(client: httpx.AsyncClient, local_part: str, **body: Any) -> None:
    body = {"local_part": local_part, "destinations": [ME]} | body
    response = await client.post(ALIASES, json=body)
    assert response.status_code == 201, response.text


async def set_catch_all(client: httpx.AsyncClient, **body: Any) -> None:
    body = {"enabled": True, "destinations": [WORK]} | body
    response = await client.put(CATCH_ALL, json=body)
    assert response.status_code == 200, response.text


async def route(client: httpx.AsyncClient, address: str) -> dict[str, Any]:
    response = await client.get("/v1/route", params={"address": address})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def rule(address: str, status: str = "active", type: str = "alias") -> dict[str, str]:
    return {"type": type, "address": address, "status": status}


async def test_route_forwards_exact_alias(client: httpx.AsyncClient, domain: str) -> None:
    await add_alias(client, "shop")
    assert await route(client, "shop@example.org") == {
        "address": "shop@example.org",
        "outcome": "forward",
        "matched_by": "exact",
        "rule": rule("shop@example.org"),
        "destinations": [ME],
        "refusal": None,
        "explanation": f"mail for shop@example.org is forwarded to {ME}",
    }


async def test_route_keeps_local_part_as_given(client: httpx.AsyncClient, domain: str) -> None:
    await add_alias(client, "shop")
    body = await route(client, "Shop@Example.ORG")
    assert (body["address"], body["rule"]) == ("Shop@example.org", rule("shop@example.org"))


async def test_route_forwards_subaddress_to_base_alias(
    client: httpx.AsyncClient, domain: str
) -> None:
    await add_alias(client, "shop")
    await set_catch_all(client)
    assert await route(client, "shop+news@example.org") == {
        "address": "shop+news@example.org",
        "outcome": "forward",
        "matched_by": "subaddress",
        "rule": rule("shop@example.org"),
        "destinations": [ME],
        "refusal": None,
        "explanation": f"mail for shop+news@example.org is forwarded to {ME}",
    }


async def test_route_ignores_tag_when_domain_has_no_subaddressing(
    client: httpx.AsyncClient, domain: str
) -> None:
    await client.patch(f"/v1/domains/{DOMAIN}", json={"subaddressing": False})
    await add_alias(client, "shop")
    body = await route(client, "shop+news@example.org")
    assert (body["outcome"], body["refusal"]) == ("refuse", "unknown_address")


async def test_route_forwards_unknown_local_part_to_catch_all(
    client: httpx.AsyncClient, domain: str
) -> None:
    await add_alias(client, "shop")
    await set_catch_all(client)
    assert await route(client, "anything@example.org") == {
        "address": "anything@example.org",
        "outcome": "forward",
        "matched_by": "catch_all",
        "rule": rule("*@example.org", type="catch_all"),
        "destinations": [WORK],
        "refusal": None,
        "explanation": f"mail for anything@example.org is forwarded to {WORK}",
    }


async def test_route_sends_quoted_local_part_with_at_sign_to_catch_all(
    client: httpx.AsyncClient, domain: str
) -> None:
    await set_catch_all(client)
    body = await route(client, '"user@foreign.example"@example.org')
    assert (body["address"], body["matched_by"], body["destinations"]) == (
        '"user@foreign.example"@example.org',
        "catch_all",
        [WORK],
    )


async def test_route_drops_for_drop_alias(client: httpx.AsyncClient, domain: str) -> None:
    await add_alias(client, "spam", action="drop", destinations=[])
    assert await route(client, "spam@example.org") == {
        "address": "spam@example.org",
        "outcome": "drop",
        "matched_by": "exact",
        "rule": rule("spam@example.org"),
        "destinations": [],
        "refusal": None,
        "explanation": "mail for spam@example.org is accepted and discarded",
    }


async def test_route_forwards_to_every_destination(client: httpx.AsyncClient, domain: str) -> None:
    await add_alias(client, "shop", destinations=[WORK, ME])
    body = await route(client, "shop@example.org")
    assert (body["destinations"], body["explanation"]) == (
        [ME, WORK],
        f"mail for shop@example.org is forwarded to {ME}, {WORK}",
    )


async def test_route_refuses_unknown_address(client: httpx.AsyncClient, domain: str) -> None:
    await add_alias(client, "shop")
    assert await route(client, "nobody@example.org") == {
        "address": "nobody@example.org",
        "outcome": "refuse",
        "matched_by": None,
        "rule": None,
        "destinations": [],
        "refusal": "unknown_address",
        "explanation": "no rule covers nobody@example.org",
    }


async def test_route_refuses_unknown_address_under_disabled_catch_all(
    client: httpx.AsyncClient, domain: str
) -> None:
    await set_catch_all(client, enabled=False)
    body = await route(client, "nobody@example.org")
    assert (body["refusal"], body["rule"]) == ("unknown_address", None)


async def test_route_refuses_disabled_alias_despite_catch_all(
    client: httpx.AsyncClient, domain: str
) -> None:
    await add_alias(client, "shop", enabled=False)
    await set_catch_all(client)
    assert await route(client, "shop@example.org") == {
        "address": "shop@example.org",
        "outcome": "refuse",
        "matched_by": "exact",
        "rule": rule("shop@example.org", "disabled"),
        "destinations": [],
        "refusal": "rule_inactive",
        "explanation": "shop@example.org is not receiving mail: the rule is disabled",
    }


async def test_route_refuses_expired_alias(
    client: httpx.AsyncClient, domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_alias(client, "shop")
    async with session_scope(sessionmaker) as session:
        await session.execute(
            update(Rule)
            .where(Rule.local_part == "shop")
            .values(expires_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    assert await route(client, "shop@example.org") == {
        "address": "shop@example.org",
        "outcome": "refuse",
        "matched_by": "exact",
        "rule": rule("shop@example.org", "expired"),
        "destinations": [],
        "refusal": "rule_inactive",
        "explanation": "shop@example.org is not receiving mail: "
        "the rule expired at 2020-01-01T00:00:00+00:00",
    }


async def test_route_refuses_alias_at_its_limit(
    client: httpx.AsyncClient, domain: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_alias(client, "shop", max_messages=1)
    async with session_scope(sessionmaker) as session:
        await session.execute(update(Rule).where(Rule.local_part == "shop").values(message_count=1))
    body = await route(client, "shop@example.org")
    assert (body["refusal"], body["rule"]) == (
        "rule_inactive",
        rule("shop@example.org", "limit_reached"),
    )


async def test_route_refuses_alias_with_pending_destination(
    client: httpx.AsyncClient, domain: str
) -> None:
    await add_alias(client, "shop", destinations=[NEW])
    body = await route(client, "shop@example.org")
    assert (body["refusal"], body["rule"], body["explanation"]) == (
        "rule_inactive",
        rule("shop@example.org", "unverified_destinations"),
        f"shop@example.org is not receiving mail: waiting for verification of {NEW}",
    )


async def test_route_refuses_deleted_alias(client: httpx.AsyncClient, domain: str) -> None:
    await add_alias(client, "shop")
    await client.delete(f"{ALIASES}/shop")
    body = await route(client, "shop@example.org")
    assert body["refusal"] == "unknown_address"


async def test_route_refuses_foreign_domain(client: httpx.AsyncClient, domain: str) -> None:
    assert await route(client, "user@foreign.example") == {
        "address": "user@foreign.example",
        "outcome": "refuse",
        "matched_by": None,
        "rule": None,
        "destinations": [],
        "refusal": "domain_not_served",
        "explanation": "foreign.example is not a domain served here",
    }


async def test_route_refuses_subdomain_of_served_domain(
    client: httpx.AsyncClient, domain: str
) -> None:
    await set_catch_all(client)
    body = await route(client, "user@mail.example.org")
    assert body["refusal"] == "domain_not_served"


async def test_route_refuses_ip_literal(client: httpx.AsyncClient, domain: str) -> None:
    assert await route(client, "user@[192.0.2.1]") == {
        "address": "user@[192.0.2.1]",
        "outcome": "refuse",
        "matched_by": None,
        "rule": None,
        "destinations": [],
        "refusal": "domain_not_served",
        "explanation": "[192.0.2.1] is not a domain served here",
    }


@pytest.mark.parametrize(
    "address",
    [
        "user@foreign.example@example.org",
        "@foreign.example:user@example.org",
        "not an address",
        "user@example.org.",
        "<user@example.org>",
    ],
)
async def test_route_refuses_invalid_address_with_422(
    client: httpx.AsyncClient, domain: str, address: str
) -> None:
    response = await client.get("/v1/route", params={"address": address})
    body = response.json()
    assert (response.status_code, list(body), body["error"]["code"]) == (
        422,
        ["error"],
        "invalid_address",
    )


async def test_route_invalid_address_answer_explains(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/route", params={"address": "user"})
    assert response.json() == {
        "error": {
            "code": "invalid_address",
            "message": "'user' is not a valid email address: An email address must have an @-sign.",
        }
    }


@pytest.mark.parametrize("params", [{}, {"address": ""}, {"address": "a" * 513}])
async def test_route_requires_address_parameter(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/v1/route", params=params)
    body = response.json()
    assert (
        response.status_code,
        body["error"]["code"],
        body["error"]["details"][0]["location"],
    ) == (
        422,
        "validation_error",
        "query.address",
    )


async def test_route_accepts_unicode_domain(client: httpx.AsyncClient) -> None:
    await client.post("/v1/domains", json={"name": "bücher.example"})
    await client.put(
        "/v1/domains/bücher.example/catch-all", json={"enabled": True, "action": "drop"}
    )
    assert await route(client, "Shop@Bücher.example") == {
        "address": "Shop@xn--bcher-kva.example",
        "outcome": "drop",
        "matched_by": "catch_all",
        "rule": rule("*@xn--bcher-kva.example", type="catch_all"),
        "destinations": [],
        "refusal": None,
        "explanation": "mail for Shop@xn--bcher-kva.example is accepted and discarded",
    }


async def test_route_needs_a_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/route", params={"address": "shop@example.org"})
    assert response.status_code == 401


ADDRESSES = [
    "shop@example.org",
    "SHOP+news@example.org",
    "spam@example.org",
    "off@example.org",
    "pending@example.org",
    "anything@example.org",
    "user@foreign.example",
    "user@[192.0.2.1]",
]


@pytest.mark.parametrize("address", ADDRESSES)
async def test_route_agrees_with_the_routes_service(
    client: httpx.AsyncClient,
    domain: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    address: str,
) -> None:
    await add_alias(client, "shop", destinations=[ME, WORK])
    await add_alias(client, "spam", action="drop", destinations=[])
    await add_alias(client, "off", enabled=False)
    await add_alias(client, "pending", destinations=[NEW])
    await set_catch_all(client)
    body = await route(client, address)
    async with session_scope(sessionmaker) as session:
        parsed, decision = await routes.route(session, address)
    expected_rule = None
    if decision.rule is not None:
        local = decision.rule.local_part or "*"
        expected_rule = {
            "type": decision.rule.kind.value,
            "address": f"{local}@{parsed.domain}",
            "status": decision.rule_state.value if decision.rule_state else None,
        }
    assert body == {
        "address": str(parsed),
        "outcome": decision.outcome.value,
        "matched_by": decision.matched_by.value if decision.matched_by else None,
        "rule": expected_rule,
        "destinations": list(decision.destinations),
        "refusal": decision.refusal.value if decision.refusal else None,
        "explanation": decision.explanation,
    }
