"""/v1/domains/{domain}/catch-all: what happens to mail no alias covers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.services.destinations import add_verified_destination

DOMAIN = "example.org"
CATCH_ALL = f"/v1/domains/{DOMAIN}/catch-all"
ME = "me@inbox.example"
WORK = "work@inbox.example"
NEW = "new@inbox.example"


@pytest.fixture
async def domain(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/domains", json={"name": DOMAIN})
    assert response.status_code == 201, response.text
    return DOMAIN


@pytest.fixture
async def verified(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with session_scope(sessionmaker) as session:
        for email in (ME, WORK):
            await add_verified_destination(session, email)
    return [ME, WORK]


@pytest.fixture
async def pending(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/destinations", json={"email": NEW})
    assert response.status_code == 201, response.text
    return NEW


def catch_all_body(**fields: Any) -> dict[str, Any]:
    return {
        "domain": DOMAIN,
        "enabled": True,
        "action": "forward",
        "destinations": [ME],
        "active": True,
        "status": "active",
        "reason": None,
    } | fields


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def test_get_catch_all_answers_disabled_when_none_is_set(
    client: httpx.AsyncClient, domain: str
) -> None:
    response = await client.get(CATCH_ALL)
    assert (response.status_code, response.json()) == (
        200,
        catch_all_body(
            enabled=False,
            destinations=[],
            active=False,
            status="disabled",
            reason="no catch-all is set",
        ),
    )


async def test_put_catch_all_forwards(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    response = await client.put(CATCH_ALL, json={"enabled": True, "destinations": [ME]})
    assert (response.status_code, response.json()) == (200, catch_all_body())


async def test_put_catch_all_forwards_to_several_destinations(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    response = await client.put(
        CATCH_ALL, json={"enabled": True, "action": "forward", "destinations": [ME, WORK]}
    )
    assert response.json() == catch_all_body(destinations=[ME, WORK])


async def test_put_catch_all_lists_destinations_in_the_order_get_does(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    put = await client.put(CATCH_ALL, json={"enabled": True, "destinations": [WORK, ME]})
    shown = await client.get(CATCH_ALL)
    assert put.json()["destinations"] == shown.json()["destinations"]


async def test_put_catch_all_drops(client: httpx.AsyncClient, domain: str) -> None:
    response = await client.put(CATCH_ALL, json={"enabled": True, "action": "drop"})
    assert (response.status_code, response.json()) == (
        200,
        catch_all_body(action="drop", destinations=[]),
    )


async def test_put_catch_all_disabled_reports_disabled(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    response = await client.put(CATCH_ALL, json={"enabled": False, "destinations": [ME]})
    assert response.json() == catch_all_body(
        enabled=False, active=False, status="disabled", reason="the rule is disabled"
    )


async def test_put_catch_all_with_pending_destination_is_inactive(
    client: httpx.AsyncClient, domain: str, pending: str
) -> None:
    response = await client.put(CATCH_ALL, json={"enabled": True, "destinations": [NEW]})
    assert response.json() == catch_all_body(
        destinations=[NEW],
        active=False,
        status="unverified_destinations",
        reason=f"waiting for verification of {NEW}",
    )


async def test_get_catch_all_answers_what_put_set(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    put = await client.put(CATCH_ALL, json={"enabled": True, "destinations": [ME]})
    shown = await client.get(CATCH_ALL)
    assert (shown.status_code, shown.json()) == (200, put.json())


async def test_put_catch_all_replaces_the_previous_one(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    await client.put(CATCH_ALL, json={"enabled": True, "destinations": [ME]})
    await client.put(CATCH_ALL, json={"enabled": True, "action": "drop"})
    assert (await client.get(CATCH_ALL)).json() == catch_all_body(action="drop", destinations=[])


async def test_put_catch_all_replaces_destinations(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    await client.put(CATCH_ALL, json={"enabled": True, "destinations": [ME]})
    await client.put(CATCH_ALL, json={"enabled": True, "destinations": [WORK]})
    assert (await client.get(CATCH_ALL)).json() == catch_all_body(destinations=[WORK])


async def test_put_catch_all_refuses_unknown_destination(
    client: httpx.AsyncClient, domain: str
) -> None:
    response = await client.put(
        CATCH_ALL, json={"enabled": True, "destinations": ["nobody@inbox.example"]}
    )
    assert (response.status_code, response.json()) == (
        422,
        error(
            "unknown_destination",
            "not a destination yet (add it with POST /v1/destinations): nobody@inbox.example",
        ),
    )


async def test_put_catch_all_keeps_the_previous_one_when_refused(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    await client.put(CATCH_ALL, json={"enabled": True, "destinations": [ME]})
    await client.put(CATCH_ALL, json={"enabled": True, "destinations": ["nobody@inbox.example"]})
    assert (await client.get(CATCH_ALL)).json() == catch_all_body()


async def test_put_catch_all_refuses_forward_without_destinations(
    client: httpx.AsyncClient, domain: str
) -> None:
    response = await client.put(CATCH_ALL, json={"enabled": True, "action": "forward"})
    assert (response.status_code, response.json()) == (
        422,
        error("invalid_rule", "a forward rule needs at least one destination"),
    )


async def test_put_catch_all_refuses_drop_with_destinations(
    client: httpx.AsyncClient, domain: str, verified: list[str]
) -> None:
    response = await client.put(
        CATCH_ALL, json={"enabled": True, "action": "drop", "destinations": [ME]}
    )
    assert (response.status_code, response.json()) == (
        422,
        error("invalid_rule", "a drop rule has no destinations"),
    )


@pytest.mark.parametrize(
    "body",
    [
        {"action": "drop"},
        {"enabled": "true", "action": "drop"},
        {"enabled": True, "action": "bounce"},
        {"enabled": True, "action": "drop", "local_part": "x"},
    ],
)
async def test_put_catch_all_refuses_malformed_body(
    client: httpx.AsyncClient, domain: str, body: dict[str, Any]
) -> None:
    response = await client.put(CATCH_ALL, json=body)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


async def test_get_catch_all_in_unknown_domain_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/domains/nowhere.example/catch-all")
    assert (response.status_code, response.json()) == (
        404,
        error("domain_not_found", "no domain named nowhere.example"),
    )


async def test_put_catch_all_in_unknown_domain_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/v1/domains/nowhere.example/catch-all", json={"enabled": True, "action": "drop"}
    )
    assert (response.status_code, response.json()) == (
        404,
        error("domain_not_found", "no domain named nowhere.example"),
    )


async def test_get_catch_all_names_unicode_domain_in_ascii(client: httpx.AsyncClient) -> None:
    await client.post("/v1/domains", json={"name": "bücher.example"})
    response = await client.get("/v1/domains/bücher.example/catch-all")
    assert (response.status_code, response.json()["domain"]) == (200, "xn--bcher-kva.example")
