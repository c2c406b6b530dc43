"""/v1/domains/{domain}/aliases: creating, listing, showing, changing and deleting aliases."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Destination, Rule
from app.routing.disposable import ALPHABET
from app.services.destinations import add_verified_destination

DOMAIN = "example.org"
ALIASES = f"/v1/domains/{DOMAIN}/aliases"
ME = "me@inbox.example"
WORK = "work@inbox.example"
NEW = "new@inbox.example"
FUTURE = "2099-01-01T00:00:00Z"
TIMESTAMPS = ("created_at", "updated_at")
DISPOSABLE = re.compile(f"[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}")


@pytest.fixture
async def domain(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/domains", json={"name": DOMAIN})
    assert response.status_code == 201, response.text
    return DOMAIN


@pytest.fixture
async def verified(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with session_scope(sessionmaker) as session:
        await add_verified_destination(session, ME)
    return ME


@pytest.fixture
async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with session_scope(sessionmaker) as session:
        await add_verified_destination(session, WORK)
    return WORK


@pytest.fixture
async def pending(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/destinations", json={"email": NEW})
    assert response.status_code == 201, response.text
    return NEW


def alias_body(local_part: str, **fields: Any) -> dict[str, Any]:
    """An alias as the API shows it, without its timestamps."""
    return {
        "address": f"{local_part}@{DOMAIN}",
        "local_part": local_part,
        "domain": DOMAIN,
        "disposable": False,
        "action": "forward",
        "destinations": [ME],
        "enabled": True,
        "expires_at": None,
        "max_messages": None,
        "message_count": 0,
        "note": None,
        "active": True,
        "status": "active",
        "reason": None,
    } | fields


def untimed(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without created_at and updated_at, which must be there and be ISO 8601."""
    for name in TIMESTAMPS:
        datetime.fromisoformat(body[name])
    return {k: v for k, v in body.items() if k not in TIMESTAMPS}


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post(ALIASES, json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def set_columns(
    sessionmaker: async_sessionmaker[AsyncSession], local_part: str, **values: Any
) -> None:
    async with session_scope(sessionmaker) as session:
        await session.execute(update(Rule).where(Rule.local_part == local_part).values(**values))


# --- POST ----------------------------------------------------------------------------------


async def test_create_alias_answers_201_with_the_alias(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    response = await client.post(ALIASES, json={"local_part": "shop", "destinations": [ME]})
    assert (response.status_code, untimed(response.json())) == (201, alias_body("shop"))


async def test_create_alias_stores_every_field_given(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(
        client,
        local_part="shop",
        destinations=[ME],
        enabled=False,
        expires_at=FUTURE,
        max_messages=20,
        note="the forum",
    )
    assert untimed(body) == alias_body(
        "shop",
        enabled=False,
        expires_at=FUTURE,
        max_messages=20,
        note="the forum",
        active=False,
        status="disabled",
        reason="the rule is disabled",
    )


async def test_create_alias_stores_local_part_in_lower_case(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(client, local_part="Shop.News", destinations=[ME])
    assert (body["local_part"], body["address"]) == ("shop.news", "shop.news@example.org")


async def test_create_alias_accepts_non_ascii_local_part(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(client, local_part="Jöhn", destinations=[ME])
    assert untimed(body) == alias_body("jöhn")


async def test_create_alias_without_local_part_generates_disposable_address(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(client, destinations=[ME])
    assert DISPOSABLE.fullmatch(body["local_part"]), body["local_part"]
    assert untimed(body) == alias_body(body["local_part"], disposable=True)


async def test_create_alias_generates_a_new_disposable_address_each_time(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    first = await create(client, destinations=[ME])
    second = await create(client, destinations=[ME])
    assert first["local_part"] != second["local_part"]


async def test_create_alias_creates_drop_alias_without_destinations(
    client: httpx.AsyncClient, domain: str
) -> None:
    body = await create(client, local_part="spam", action="drop")
    assert untimed(body) == alias_body("spam", action="drop", destinations=[])


async def test_create_alias_forwards_to_every_destination(
    client: httpx.AsyncClient, domain: str, verified: str, work: str
) -> None:
    body = await create(client, local_part="shop", destinations=[ME, WORK])
    assert body["destinations"] == [ME, WORK]


async def test_create_alias_lists_a_repeated_destination_once(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(client, local_part="shop", destinations=[ME, "ME@inbox.example"])
    assert body["destinations"] == [ME]


async def test_create_alias_lists_destinations_in_the_order_get_does(
    client: httpx.AsyncClient, domain: str, verified: str, work: str
) -> None:
    created = await create(client, local_part="shop", destinations=[WORK, ME])
    shown = (await client.get(f"{ALIASES}/shop")).json()
    assert created["destinations"] == shown["destinations"]


async def test_create_alias_finds_destination_given_in_other_case(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(client, local_part="shop", destinations=["ME@Inbox.Example"])
    assert body["destinations"] == [ME]


async def test_create_alias_answers_expires_at_in_utc(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(
        client, local_part="shop", destinations=[ME], expires_at="2099-01-01T02:00:00+02:00"
    )
    assert body["expires_at"] == "2099-01-01T00:00:00Z"


@pytest.mark.parametrize("expires_at", [4102444800, 0.5, "4102444800"])
async def test_create_alias_expires_at_as_a_timestamp_is_422(
    client: httpx.AsyncClient, domain: str, verified: str, expires_at: object
) -> None:
    body = {"local_part": "shop", "destinations": [ME], "expires_at": expires_at}
    response = await client.post(ALIASES, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert (await client.get(ALIASES)).json()["items"] == []


async def test_create_alias_answers_as_a_later_get_does(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    created = await create(client, local_part="shop", destinations=[ME], expires_at=FUTURE)
    shown = await client.get(f"{ALIASES}/shop")
    assert created == shown.json()


async def test_create_alias_is_inactive_while_destination_is_pending(
    client: httpx.AsyncClient, domain: str, pending: str
) -> None:
    body = await create(client, local_part="shop", destinations=[NEW])
    assert untimed(body) == alias_body(
        "shop",
        destinations=[NEW],
        active=False,
        status="unverified_destinations",
        reason=f"waiting for verification of {NEW}",
    )


async def test_create_alias_becomes_active_once_destination_is_verified(
    client: httpx.AsyncClient,
    domain: str,
    pending: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await create(client, local_part="shop", destinations=[NEW])
    async with session_scope(sessionmaker) as session:
        await session.execute(
            update(Destination)
            .where(Destination.email == NEW)
            .values(status="verified", verified_at=datetime.now(UTC))
        )
    shown = (await client.get(f"{ALIASES}/shop")).json()
    assert untimed(shown) == alias_body("shop", destinations=[NEW])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            {"local_part": "shop", "destinations": ["nobody@inbox.example"]},
            error(
                "unknown_destination",
                "not a destination yet (add it with POST /v1/destinations): nobody@inbox.example",
            ),
            id="unknown_destination",
        ),
        pytest.param(
            {"local_part": "shop"},
            error("invalid_rule", "a forward rule needs at least one destination"),
            id="forward_without_destinations",
        ),
        pytest.param(
            {"local_part": "shop", "action": "drop", "destinations": [ME]},
            error("invalid_rule", "a drop rule has no destinations"),
            id="drop_with_destinations",
        ),
        pytest.param(
            {"local_part": "shop", "destinations": [ME], "expires_at": "2020-01-01T00:00:00Z"},
            error("invalid_rule", "expires_at must be in the future; to stop an alias, disable it"),
            id="expiry_in_the_past",
        ),
    ],
)
async def test_create_alias_refuses_an_alias_it_cannot_keep(
    client: httpx.AsyncClient,
    domain: str,
    verified: str,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    response = await client.post(ALIASES, json=body)
    assert (response.status_code, response.json()) == (422, expected)


async def test_create_alias_stores_nothing_when_refused(
    client: httpx.AsyncClient, domain: str
) -> None:
    await client.post(ALIASES, json={"local_part": "shop", "destinations": ["x@inbox.example"]})
    listed = (await client.get(ALIASES)).json()
    assert listed == {"items": [], "total": 0, "limit": 50, "offset": 0}


@pytest.mark.parametrize("again", ["shop", "SHOP", "Shop"])
async def test_create_alias_refuses_existing_local_part(
    client: httpx.AsyncClient, domain: str, verified: str, again: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    response = await client.post(ALIASES, json={"local_part": again, "destinations": [ME]})
    assert (response.status_code, response.json()) == (
        409,
        error("alias_exists", "shop@example.org already exists"),
    )


async def test_create_alias_refuses_same_local_part_in_other_unicode_form(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="\u00e9cole", destinations=[ME])
    response = await client.post(ALIASES, json={"local_part": "e\u0301cole", "destinations": [ME]})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "alias_exists")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("expires_at", "2099-01-01T00:00:00", id="expiry_without_time_zone"),
        pytest.param("max_messages", 0, id="max_messages_zero"),
        pytest.param("max_messages", -1, id="max_messages_negative"),
    ],
)
async def test_create_alias_refuses_invalid_value_naming_its_field(
    client: httpx.AsyncClient, domain: str, verified: str, field: str, value: object
) -> None:
    response = await client.post(
        ALIASES, json={"local_part": "shop", "destinations": [ME], field: value}
    )
    body = response.json()
    assert (
        response.status_code,
        body["error"]["code"],
        body["error"]["details"][0]["location"],
    ) == (
        422,
        "validation_error",
        f"body.{field}",
    )


@pytest.mark.parametrize(
    ("local_part", "code"),
    [
        ("a b", "invalid_local_part"),
        (" shop", "invalid_local_part"),
        ('"shop"', "invalid_local_part"),
        ('"user@foreign.example"', "invalid_local_part"),
        ("user@foreign.example", "invalid_local_part"),
        ("a..b", "invalid_local_part"),
        ("a" * 65, "validation_error"),
        ("", "validation_error"),
    ],
)
async def test_create_alias_refuses_invalid_local_part(
    client: httpx.AsyncClient, domain: str, verified: str, local_part: str, code: str
) -> None:
    response = await client.post(ALIASES, json={"local_part": local_part, "destinations": [ME]})
    assert (response.status_code, response.json()["error"]["code"]) == (422, code)


async def test_create_alias_accepts_64_character_local_part(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    body = await create(client, local_part="a" * 64, destinations=[ME])
    assert body["local_part"] == "a" * 64


async def test_create_alias_refuses_unknown_field(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    response = await client.post(
        ALIASES, json={"local_part": "shop", "destinations": [ME], "colour": "red"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


async def test_create_alias_in_unknown_domain_answers_404(
    client: httpx.AsyncClient, verified: str
) -> None:
    response = await client.post(
        "/v1/domains/nowhere.example/aliases", json={"local_part": "shop", "destinations": [ME]}
    )
    assert (response.status_code, response.json()) == (
        404,
        error("domain_not_found", "no domain named nowhere.example"),
    )


async def test_create_alias_names_unicode_domain_in_ascii(
    client: httpx.AsyncClient, verified: str
) -> None:
    await client.post("/v1/domains", json={"name": "bücher.example"})
    response = await client.post(
        "/v1/domains/bücher.example/aliases", json={"local_part": "shop", "destinations": [ME]}
    )
    body = response.json()
    assert (response.status_code, body["domain"], body["address"]) == (
        201,
        "xn--bcher-kva.example",
        "shop@xn--bcher-kva.example",
    )


# --- GET list ------------------------------------------------------------------------------


async def test_list_aliases_answers_a_page_by_local_part(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="zoo", destinations=[ME])
    await create(client, local_part="bank", action="drop")
    response = await client.get(ALIASES)
    body = response.json()
    body["items"] = [untimed(item) for item in body["items"]]
    assert (response.status_code, body) == (
        200,
        {
            "items": [alias_body("bank", action="drop", destinations=[]), alias_body("zoo")],
            "total": 2,
            "limit": 50,
            "offset": 0,
        },
    )


async def test_list_aliases_leaves_out_the_catch_all(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await client.put(
        f"/v1/domains/{DOMAIN}/catch-all", json={"enabled": True, "destinations": [ME]}
    )
    assert (await client.get(ALIASES)).json()["total"] == 0


@pytest.mark.parametrize(("enabled", "expected"), [("true", ["on"]), ("false", ["off"])])
async def test_list_aliases_filters_by_enabled(
    client: httpx.AsyncClient, domain: str, verified: str, enabled: str, expected: list[str]
) -> None:
    await create(client, local_part="on", destinations=[ME])
    await create(client, local_part="off", destinations=[ME], enabled=False)
    body = (await client.get(ALIASES, params={"enabled": enabled})).json()
    assert ([item["local_part"] for item in body["items"]], body["total"]) == (expected, 1)


@pytest.mark.parametrize(
    ("aliases", "q", "expected"),
    [
        pytest.param([("shopping", None), ("bank", None)], "hop", ["shopping"], id="local_part"),
        pytest.param([("a", "the cycling forum"), ("b", "bank")], "cycling", ["a"], id="note"),
        pytest.param(
            [("shop", None), ("x", "Newsletter"), ("y", None)],
            "SHOP",
            ["shop"],
            id="local_part_in_any_case",
        ),
        pytest.param(
            [("shop", None), ("x", "Newsletter"), ("y", None)],
            "nEWS",
            ["x"],
            id="note_in_any_case",
        ),
        pytest.param(
            [("a", "ÄRGER mit der Bank"), ("b", "anything else")],
            "ärger",
            ["a"],
            id="non_ascii_letters_in_any_case",
        ),
        pytest.param([("100%off", None), ("bank", None)], "%", ["100%off"], id="percent_literally"),
        pytest.param([("a_b", None), ("axb", None)], "a_b", ["a_b"], id="underscore_literally"),
        pytest.param([("a", r"C:\temp"), ("b", "C:temp")], "\\", ["a"], id="backslash_literally"),
    ],
)
async def test_list_aliases_q_matches(
    client: httpx.AsyncClient,
    domain: str,
    verified: str,
    aliases: list[tuple[str, str | None]],
    q: str,
    expected: list[str],
) -> None:
    for local_part, note in aliases:
        noted = {} if note is None else {"note": note}
        await create(client, local_part=local_part, destinations=[ME], **noted)
    body = (await client.get(ALIASES, params={"q": q})).json()
    assert [item["local_part"] for item in body["items"]] == expected


async def test_list_aliases_pages_with_limit_and_offset(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    for local_part in ["a", "b", "c", "d", "e"]:
        await create(client, local_part=local_part, destinations=[ME])
    body = (await client.get(ALIASES, params={"limit": 2, "offset": 2})).json()
    assert ([item["local_part"] for item in body["items"]], body["total"]) == (["c", "d"], 5)
    assert (body["limit"], body["offset"]) == (2, 2)


async def test_list_aliases_total_counts_only_matching_aliases(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    for local_part in ["shop1", "shop2", "shop3", "bank"]:
        await create(client, local_part=local_part, destinations=[ME])
    body = (await client.get(ALIASES, params={"q": "shop", "limit": 1})).json()
    assert ([item["local_part"] for item in body["items"]], body["total"]) == (["shop1"], 3)


async def test_list_aliases_past_the_end_is_empty_with_total(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    body = (await client.get(ALIASES, params={"offset": 10})).json()
    assert body == {"items": [], "total": 1, "limit": 50, "offset": 10}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"offset": -1}])
async def test_list_aliases_refuses_out_of_range_paging(
    client: httpx.AsyncClient, domain: str, params: dict[str, int]
) -> None:
    response = await client.get(ALIASES, params=params)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


async def test_list_aliases_only_shows_the_domain_own_aliases(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await client.post("/v1/domains", json={"name": "other.example"})
    await client.post(
        "/v1/domains/other.example/aliases", json={"local_part": "shop", "destinations": [ME]}
    )
    assert (await client.get(ALIASES)).json()["total"] == 0


async def test_list_aliases_in_unknown_domain_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/domains/nowhere.example/aliases")
    assert (response.status_code, response.json()) == (
        404,
        error("domain_not_found", "no domain named nowhere.example"),
    )


# --- GET one -------------------------------------------------------------------------------


async def test_get_alias_answers_the_alias(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME], note="shopping")
    response = await client.get(f"{ALIASES}/shop")
    assert (response.status_code, untimed(response.json())) == (
        200,
        alias_body("shop", note="shopping"),
    )


async def test_get_alias_finds_local_part_in_any_case(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    response = await client.get(f"{ALIASES}/SHOP")
    assert (response.status_code, response.json()["local_part"]) == (200, "shop")


async def test_get_alias_finds_local_part_with_slash(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    # "/" is atext (RFC 5322 3.2.3): such an alias can be created, so it must be reachable.
    await create(client, local_part="a/b", destinations=[ME])
    response = await client.get(f"{ALIASES}/a%2Fb")
    assert (response.status_code, untimed(response.json())) == (200, alias_body("a/b"))


async def test_get_alias_unknown_answers_404(client: httpx.AsyncClient, domain: str) -> None:
    response = await client.get(f"{ALIASES}/nobody")
    assert (response.status_code, response.json()) == (
        404,
        error("alias_not_found", "no alias nobody@example.org"),
    )


async def test_get_alias_in_unknown_domain_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/domains/nowhere.example/aliases/shop")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "domain_not_found")


@pytest.mark.parametrize(
    ("created", "columns", "shown"),
    [
        pytest.param(
            {"max_messages": 2},
            {"message_count": 2},
            {
                "max_messages": 2,
                "message_count": 2,
                "status": "limit_reached",
                "reason": "the rule has accepted its limit of 2 messages",
            },
            id="limit_reached",
        ),
        pytest.param(
            {"expires_at": FUTURE},
            {"expires_at": datetime(2020, 1, 1, tzinfo=UTC)},
            {
                "expires_at": "2020-01-01T00:00:00Z",
                "status": "expired",
                "reason": "the rule expired at 2020-01-01T00:00:00+00:00",
            },
            id="expired",
        ),
    ],
)
async def test_get_alias_reports_why_it_is_inactive(
    client: httpx.AsyncClient,
    domain: str,
    verified: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    created: dict[str, Any],
    columns: dict[str, Any],
    shown: dict[str, Any],
) -> None:
    await create(client, local_part="shop", destinations=[ME], **created)
    await set_columns(sessionmaker, "shop", **columns)
    body = (await client.get(f"{ALIASES}/shop")).json()
    assert untimed(body) == alias_body("shop", active=False, **shown)


# --- PATCH ---------------------------------------------------------------------------------


async def test_update_alias_changes_only_the_fields_sent(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(
        client, local_part="shop", destinations=[ME], expires_at=FUTURE, max_messages=5, note="n"
    )
    response = await client.patch(f"{ALIASES}/shop", json={"enabled": False})
    assert (response.status_code, untimed(response.json())) == (
        200,
        alias_body(
            "shop",
            enabled=False,
            expires_at=FUTURE,
            max_messages=5,
            note="n",
            active=False,
            status="disabled",
            reason="the rule is disabled",
        ),
    )


async def test_update_alias_with_empty_body_changes_nothing(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME], note="n")
    response = await client.patch(f"{ALIASES}/shop", json={})
    assert (response.status_code, untimed(response.json())) == (200, alias_body("shop", note="n"))


@pytest.mark.parametrize("field", ["expires_at", "max_messages", "note"])
async def test_update_alias_null_clears_optional_field(
    client: httpx.AsyncClient, domain: str, verified: str, field: str
) -> None:
    await create(
        client, local_part="shop", destinations=[ME], expires_at=FUTURE, max_messages=5, note="n"
    )
    body = (await client.patch(f"{ALIASES}/shop", json={field: None})).json()
    kept = {"expires_at": FUTURE, "max_messages": 5, "note": "n"} | {field: None}
    assert untimed(body) == alias_body("shop", **kept)


@pytest.mark.parametrize("field", ["enabled", "action", "destinations"])
async def test_update_alias_null_leaves_required_field_as_is(
    client: httpx.AsyncClient, domain: str, verified: str, field: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    response = await client.patch(f"{ALIASES}/shop", json={field: None})
    assert (response.status_code, untimed(response.json())) == (200, alias_body("shop"))


async def test_update_alias_switching_to_drop_clears_destinations(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    body = (await client.patch(f"{ALIASES}/shop", json={"action": "drop"})).json()
    assert untimed(body) == alias_body("shop", action="drop", destinations=[])


async def test_update_alias_switching_to_drop_leaves_destination_unused(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    await client.patch(f"{ALIASES}/shop", json={"action": "drop"})
    destination_id = (await client.get("/v1/destinations")).json()[0]["id"]
    response = await client.delete(f"/v1/destinations/{destination_id}")
    assert response.status_code == 204


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            {"action": "drop", "destinations": [ME]},
            error("invalid_rule", "a drop rule has no destinations"),
            id="drop_with_destinations",
        ),
        pytest.param(
            {"destinations": ["nobody@inbox.example"]},
            error(
                "unknown_destination",
                "not a destination yet (add it with POST /v1/destinations): nobody@inbox.example",
            ),
            id="unknown_destination",
        ),
        pytest.param(
            {"expires_at": "2020-01-01T00:00:00Z"},
            error("invalid_rule", "expires_at must be in the future; to stop an alias, disable it"),
            id="expiry_in_the_past",
        ),
    ],
)
async def test_update_alias_refuses_a_change_it_cannot_keep(
    client: httpx.AsyncClient,
    domain: str,
    verified: str,
    change: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    response = await client.patch(f"{ALIASES}/shop", json=change)
    assert (response.status_code, response.json()) == (422, expected)


async def test_update_alias_refuses_forward_without_destinations(
    client: httpx.AsyncClient, domain: str
) -> None:
    await create(client, local_part="spam", action="drop")
    response = await client.patch(f"{ALIASES}/spam", json={"action": "forward"})
    assert (response.status_code, response.json()) == (
        422,
        error("invalid_rule", "a forward rule needs at least one destination"),
    )


async def test_update_alias_switching_to_forward_with_destinations(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="spam", action="drop")
    body = (
        await client.patch(f"{ALIASES}/spam", json={"action": "forward", "destinations": [ME]})
    ).json()
    assert untimed(body) == alias_body("spam")


async def test_update_alias_replaces_destinations(
    client: httpx.AsyncClient, domain: str, verified: str, work: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    body = (await client.patch(f"{ALIASES}/shop", json={"destinations": [WORK]})).json()
    assert untimed(body) == alias_body("shop", destinations=[WORK])


async def test_update_alias_lists_destinations_in_the_order_get_does(
    client: httpx.AsyncClient, domain: str, verified: str, work: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    changed = (await client.patch(f"{ALIASES}/shop", json={"destinations": [WORK, ME]})).json()
    shown = (await client.get(f"{ALIASES}/shop")).json()
    assert changed["destinations"] == shown["destinations"]


async def test_update_alias_refuses_zero_max_messages(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    response = await client.patch(f"{ALIASES}/shop", json={"max_messages": 0})
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


async def test_update_alias_keeps_the_alias_when_refused(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    await client.patch(
        f"{ALIASES}/shop", json={"note": "changed", "destinations": ["nobody@inbox.example"]}
    )
    assert untimed((await client.get(f"{ALIASES}/shop")).json()) == alias_body("shop")


async def test_update_alias_answers_expires_at_in_utc(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    changed = await client.patch(
        f"{ALIASES}/shop", json={"expires_at": "2099-01-01T02:00:00+02:00"}
    )
    assert changed.json()["expires_at"] == "2099-01-01T00:00:00Z"


async def test_update_alias_answers_as_a_later_get_does(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    changed = await client.patch(
        f"{ALIASES}/shop", json={"note": "n", "max_messages": 3, "expires_at": FUTURE}
    )
    shown = await client.get(f"{ALIASES}/shop")
    assert changed.json() == shown.json()


async def test_update_alias_unknown_answers_404(client: httpx.AsyncClient, domain: str) -> None:
    response = await client.patch(f"{ALIASES}/nobody", json={"enabled": False})
    assert (response.status_code, response.json()) == (
        404,
        error("alias_not_found", "no alias nobody@example.org"),
    )


# --- DELETE --------------------------------------------------------------------------------


async def test_delete_alias_answers_204_and_removes_it(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    deleted = await client.delete(f"{ALIASES}/shop")
    shown = await client.get(f"{ALIASES}/shop")
    assert (deleted.status_code, deleted.content, shown.status_code) == (204, b"", 404)


async def test_delete_alias_twice_answers_404(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    await client.delete(f"{ALIASES}/shop")
    response = await client.delete(f"{ALIASES}/shop")
    assert (response.status_code, response.json()) == (
        404,
        error("alias_not_found", "no alias shop@example.org"),
    )


async def test_delete_alias_frees_its_local_part(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="shop", destinations=[ME])
    await client.delete(f"{ALIASES}/shop")
    response = await client.post(ALIASES, json={"local_part": "shop", "destinations": [ME]})
    assert response.status_code == 201


async def test_delete_alias_with_slash_in_local_part(
    client: httpx.AsyncClient, domain: str, verified: str
) -> None:
    await create(client, local_part="a/b", destinations=[ME])
    response = await client.delete(f"{ALIASES}/a%2Fb")
    assert response.status_code == 204


async def test_delete_alias_in_unknown_domain_answers_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/domains/nowhere.example/aliases/shop")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "domain_not_found")
