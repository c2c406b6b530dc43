"""/v1/blocks: blocking a sender for all our domains, one, or one alias; listing and
unblocking; and GET /v1/route answering as RCPT does for a blocked sender."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.services import activity
from app.services.destinations import add_verified_destination
from tests.matchers import Recent

DOMAIN = "example.org"
OTHER = "other.example"
ME = "me@inbox.example"


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def block(
    block_id: int, sender: str, kind: str = "address", scope: str | None = None
) -> dict[str, Any]:
    return {
        "id": block_id,
        "sender": sender,
        "kind": kind,
        "scope": scope,
        "created_at": Recent(),
    }


@pytest.fixture
async def aliases(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """shop@ and news@ on example.org, shop@ on other.example, all forwarding to ME."""
    async with session_scope(sessionmaker) as session:
        await add_verified_destination(session, ME)
    for domain in (DOMAIN, OTHER):
        response = await client.post("/v1/domains", json={"name": domain})
        assert response.status_code == 201, response.text
    for domain, local in ((DOMAIN, "shop"), (DOMAIN, "news"), (OTHER, "shop")):
        response = await client.post(
            f"/v1/domains/{domain}/aliases", json={"local_part": local, "destinations": [ME]}
        )
        assert response.status_code == 201, response.text


async def add(client: httpx.AsyncClient, **body: str) -> httpx.Response:
    return await client.post("/v1/blocks", json=body)


async def route(client: httpx.AsyncClient, address: str, sender: str) -> dict[str, Any]:
    response = await client.get("/v1/route", params={"address": address, "sender": sender})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_blocks_create_normalises_an_address(client: httpx.AsyncClient) -> None:
    response = await add(client, sender="Spam@BAD.Example")

    assert (response.status_code, response.json()) == (201, block(1, "spam@bad.example"))


async def test_blocks_create_a_domain_in_a_labels(client: httpx.AsyncClient) -> None:
    response = await add(client, sender="Bücher.example")

    assert (response.status_code, response.json()) == (
        201,
        block(1, "xn--bcher-kva.example", kind="domain"),
    )


@pytest.mark.usefixtures("aliases")
async def test_blocks_create_scoped_to_a_domain_and_an_alias(client: httpx.AsyncClient) -> None:
    first = await add(client, sender="bad.example", scope="Example.ORG")
    second = await add(client, sender="spam@bad.example", scope="Shop@example.org")

    assert (first.status_code, first.json()) == (201, block(1, "bad.example", "domain", DOMAIN))
    assert (second.status_code, second.json()) == (
        201,
        block(2, "spam@bad.example", scope="shop@example.org"),
    )


@pytest.mark.usefixtures("aliases")
async def test_blocks_list_every_block_oldest_first(client: httpx.AsyncClient) -> None:
    await add(client, sender="spam@bad.example")
    await add(client, sender="bad.example", scope=OTHER)

    response = await client.get("/v1/blocks")

    assert (response.status_code, response.json()) == (
        200,
        [block(1, "spam@bad.example"), block(2, "bad.example", "domain", OTHER)],
    )


async def test_blocks_delete_unblocks(client: httpx.AsyncClient) -> None:
    await add(client, sender="spam@bad.example")

    response = await client.delete("/v1/blocks/1")

    assert (response.status_code, response.content) == (204, b"")
    assert (await client.get("/v1/blocks")).json() == []


async def test_blocks_delete_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/blocks/7")

    assert (response.status_code, response.json()) == (
        404,
        error("block_not_found", "no block 7"),
    )


async def test_blocks_same_sender_and_scope_twice_is_409(client: httpx.AsyncClient) -> None:
    await add(client, sender="spam@bad.example")

    response = await add(client, sender="SPAM@bad.example")

    assert (response.status_code, response.json()) == (
        409,
        error("block_exists", "spam@bad.example is already blocked there (block 1)"),
    )


@pytest.mark.usefixtures("aliases")
async def test_blocks_same_sender_with_another_scope_is_a_new_block(
    client: httpx.AsyncClient,
) -> None:
    await add(client, sender="spam@bad.example")

    response = await add(client, sender="spam@bad.example", scope=DOMAIN)

    assert response.status_code == 201, response.text


async def test_blocks_unknown_domain_scope_is_404(client: httpx.AsyncClient) -> None:
    response = await add(client, sender="spam@bad.example", scope="nowhere.example")

    assert (response.status_code, response.json()) == (
        404,
        error("domain_not_found", "no domain named nowhere.example"),
    )


@pytest.mark.usefixtures("aliases")
async def test_blocks_unknown_alias_scope_is_404(client: httpx.AsyncClient) -> None:
    response = await add(client, sender="spam@bad.example", scope="nobody@example.org")

    assert (response.status_code, response.json()) == (
        404,
        error("alias_not_found", "no alias nobody@example.org"),
    )


async def test_blocks_sender_that_is_not_a_domain_is_422(client: httpx.AsyncClient) -> None:
    response = await add(client, sender="localhost")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_domain"


async def test_blocks_sender_that_is_not_an_address_is_422(client: httpx.AsyncClient) -> None:
    response = await add(client, sender="a@@bad.example")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_address"


@pytest.mark.parametrize(
    "body",
    [{}, {"sender": ""}, {"sender": 5}, {"sender": "a@b.example", "extra": 1}],
    ids=["missing", "empty", "number", "unknown-field"],
)
async def test_blocks_invalid_body_is_422_validation_error(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/v1/blocks", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_blocks_need_a_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/v1/blocks", json={"sender": "spam@bad.example"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


@pytest.mark.usefixtures("aliases")
async def test_blocks_route_refuses_a_blocked_address(client: httpx.AsyncClient) -> None:
    await add(client, sender="spam@bad.example")

    answer = await route(client, "shop@example.org", "Spam@bad.example")

    assert (answer["outcome"], answer["refusal"]) == ("refuse", "blocked_sender")
    assert answer["explanation"] == (
        "mail from Spam@bad.example to shop@example.org is blocked (block 1: spam@bad.example)"
    )


@pytest.mark.usefixtures("aliases")
async def test_blocks_route_domain_block_covers_subdomains(client: httpx.AsyncClient) -> None:
    await add(client, sender="bad.example")

    answer = await route(client, "shop@example.org", "x@mail.bad.example")
    unrelated = await route(client, "shop@example.org", "x@notbad.example")

    assert answer["refusal"] == "blocked_sender"
    assert unrelated["outcome"] == "forward"


@pytest.mark.usefixtures("aliases")
async def test_blocks_route_scoped_block_spares_other_addresses(
    client: httpx.AsyncClient,
) -> None:
    await add(client, sender="bad.example", scope="shop@example.org")

    assert (await route(client, "shop+tag@example.org", "x@bad.example"))["refusal"] == (
        "blocked_sender"
    )
    assert (await route(client, "news@example.org", "x@bad.example"))["outcome"] == "forward"
    assert (await route(client, "shop@other.example", "x@bad.example"))["outcome"] == "forward"


@pytest.mark.usefixtures("aliases")
async def test_blocks_route_null_sender_is_never_blocked(client: httpx.AsyncClient) -> None:
    await add(client, sender="spam@bad.example")
    await add(client, sender="bad.example")

    assert (await route(client, "shop@example.org", ""))["outcome"] == "forward"


@pytest.mark.usefixtures("aliases")
async def test_blocks_route_after_unblocking_forwards(client: httpx.AsyncClient) -> None:
    await add(client, sender="spam@bad.example")
    await client.delete("/v1/blocks/1")

    assert (await route(client, "shop@example.org", "spam@bad.example"))["outcome"] == "forward"


@pytest.mark.usefixtures("aliases")
async def test_blocks_deleting_the_alias_deletes_its_blocks(client: httpx.AsyncClient) -> None:
    await add(client, sender="spam@bad.example", scope="shop@example.org")

    await client.delete("/v1/domains/example.org/aliases/shop")

    assert (await client.get("/v1/blocks")).json() == []


async def test_blocks_activity_filters_blocked_rows(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with session_scope(sessionmaker) as session:
        for status in (activity.BLOCKED, activity.REJECTED):
            activity.record(
                session,
                activity.row(
                    activity.Envelope("192.0.2.1", "spam@bad.example"),
                    status=status,
                    address="shop@example.org",
                ),
            )

    response = await client.get("/v1/activity", params={"status": "blocked"})

    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["items"]] == ["blocked"]
