"""/v1/activity: the log of messages refused, dropped and forwarded, newest first, filtered
and paged."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.routing.srs import Srs
from app.services import activity
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.server import start_server
from tests.conftest import HOSTNAME

Sessionmaker = async_sessionmaker[AsyncSession]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def record(
    sessionmaker: Sessionmaker,
    address: str | None,
    *,
    status: str = activity.FORWARDED,
    at: datetime = T0,
    **fields: Any,
) -> None:
    async with session_scope(sessionmaker) as session:
        activity.record(
            session,
            activity.row(
                activity.Envelope("192.0.2.1", "alice@sender.example"),
                status=status,
                address=address,
                at=at,
                **fields,
            ),
        )


async def record_each(sessionmaker: Sessionmaker, addresses: list[str]) -> None:
    """One row per address, a minute apart, in the order given."""
    for n, address in enumerate(addresses):
        await record(sessionmaker, address, at=T0 + timedelta(minutes=n))


async def listed(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/activity", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def addresses(client: httpx.AsyncClient, **params: Any) -> list[str]:
    return [item["address"] for item in (await listed(client, **params))["items"]]


async def rcpt_through_smtp(
    sessionmaker: Sessionmaker, recipient: str, *, smtputf8: bool = False
) -> tuple[int, bytes]:
    """MAIL and RCPT against the real SMTP server on the test database."""
    handler = InboundHandler(
        sessionmaker,
        Srs("test-srs-secret-0123456789", HOSTNAME),
        InboundConfig(hostname=HOSTNAME, queue_lifetime=timedelta(days=5)),
    )
    server = await start_server(handler, host="127.0.0.1", port=0, max_message_size=65536)
    port = server.sockets[0].getsockname()[1]

    def talk() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10) as c:
            c.ehlo()
            c.mail("alice@sender.example", ["SMTPUTF8"] if smtputf8 else [])
            return c.rcpt(recipient)

    try:
        return await asyncio.to_thread(talk)
    finally:
        server.close()
        await server.wait_closed()
        await handler.drain()  # a refusal's activity row is written in the background


# Listing


async def test_list_activity_empty(client: httpx.AsyncClient) -> None:
    assert await listed(client) == {"items": [], "next_before": None}


async def test_list_activity_needs_a_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/activity")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


async def test_list_activity_shows_a_row_whole(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    async with session_scope(sessionmaker) as session:
        activity.record(
            session,
            activity.row(
                activity.Envelope(
                    "192.0.2.1",
                    "alice@sender.example",
                    "<1@sender.example>",
                    4096,
                    7,
                    VERDICTS,
                ),
                status=activity.FORWARDED,
                address="shop@example.org",
                rule="shop@example.org",
                action="forward",
                destination="me@inbox.example",
                remote_host="mx.inbox.example[198.51.100.7]",
                reply="250 2.0.0 Ok: queued as 4Bc1",
                at=T0,
            ),
        )
    [item] = (await listed(client))["items"]
    assert item == {
        "id": item["id"],
        "at": "2024-05-01T12:00:00Z",
        "status": "forwarded",
        "client_ip": "192.0.2.1",
        "mail_from": "alice@sender.example",
        "address": "shop@example.org",
        "rule": "shop@example.org",
        "action": "forward",
        "destination": "me@inbox.example",
        "remote_host": "mx.inbox.example[198.51.100.7]",
        "reply": "250 2.0.0 Ok: queued as 4Bc1",
        "message_id": "<1@sender.example>",
        "size": 4096,
        **VERDICTS,
    }


VERDICTS = {
    "spf": "pass",
    "dkim": "fail",
    "dmarc": "pass",
    "arc": "none",
    "spam_score": 1.5,
    "spam_action": "no action",
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("dmarc=fail", ["spoof@example.org"]),
        ("spf=pass", ["good@example.org"]),
        ("spam_action=reject", ["spoof@example.org"]),
        ("dkim=none", []),
    ],
)
async def test_list_activity_filters_on_verdicts(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker, query: str, expected: list[str]
) -> None:
    good = VERDICTS
    spoof = VERDICTS | {"spf": "fail", "dmarc": "fail", "spam_action": "reject"}
    async with session_scope(sessionmaker) as session:
        for address, verdicts in (("good@example.org", good), ("spoof@example.org", spoof)):
            activity.record(
                session,
                activity.row(
                    activity.Envelope("192.0.2.1", "a@sender.example", verdicts=verdicts),
                    status=activity.REJECTED,
                    address=address,
                ),
            )
    response = await client.get(f"/v1/activity?{query}")
    assert response.status_code == 200, response.text
    assert [item["address"] for item in response.json()["items"]] == expected


async def test_list_activity_unknown_verdict_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/activity?dmarc=maybe")
    assert response.status_code == 422
    assert response.json()["error"]["code"]


async def test_list_activity_shows_a_recipient_refused_over_smtp(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    code, _text = await rcpt_through_smtp(sessionmaker, "someone@foreign.example")
    assert code == 550
    [item] = (await listed(client))["items"]
    assert (item["status"], item["address"], item["mail_from"], item["client_ip"]) == (
        "rejected",
        "someone@foreign.example",
        "alice@sender.example",
        "127.0.0.1",
    )


async def test_list_activity_newest_first(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@example.org", "b@example.org", "c@example.org"])
    assert await addresses(client) == ["c@example.org", "b@example.org", "a@example.org"]


# Filters


async def test_list_activity_filters_by_domain(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@example.org", "b@example.net", "c@example.org"])
    assert await addresses(client, domain="example.org") == ["c@example.org", "a@example.org"]


async def test_list_activity_domain_filter_ignores_case(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@Example.ORG", "b@example.net"])
    assert await addresses(client, domain="EXAMPLE.org") == ["a@Example.ORG"]


async def test_list_activity_domain_filter_normalises_unicode(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["info@xn--bcher-kva.example", "info@example.org"])
    assert await addresses(client, domain="BÜCHER.example") == ["info@xn--bcher-kva.example"]


async def test_list_activity_domain_filter_finds_unicode_recipients(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    # An SMTPUTF8 client may name the domain in U-labels (RFC 6531); it is the same domain.
    code, _text = await rcpt_through_smtp(sessionmaker, "info@bücher.example", smtputf8=True)
    assert code == 550
    assert await addresses(client, domain="bücher.example") == ["info@bücher.example"]


async def test_list_activity_invalid_domain_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/activity", params={"domain": "not a domain"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_domain"


async def test_list_activity_filters_by_address_ignoring_case(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["shop@example.org", "Shop@Example.org", "other@example.org"])
    assert await addresses(client, address="SHOP@EXAMPLE.ORG") == [
        "Shop@Example.org",
        "shop@example.org",
    ]


async def test_list_activity_filters_by_status(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record(sessionmaker, "a@example.org", status=activity.REJECTED)
    await record(sessionmaker, "b@example.org", status=activity.FORWARDED)
    await record(sessionmaker, "c@example.org", status=activity.DEFERRED)
    assert await addresses(client, status="forwarded") == ["b@example.org"]


async def test_list_activity_invalid_status_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/activity", params={"status": "lost"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_list_activity_since_includes_the_moment(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@example.org", "b@example.org", "c@example.org"])
    since = (T0 + timedelta(minutes=1)).isoformat()
    assert await addresses(client, since=since) == ["c@example.org", "b@example.org"]


async def test_list_activity_since_compares_instants_across_zones(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@example.org", "b@example.org", "c@example.org"])
    # 14:01 at UTC+2 is 12:01 UTC.
    since = (T0 + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert await addresses(client, since=since) == ["c@example.org", "b@example.org"]


async def test_list_activity_naive_since_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/activity", params={"since": "2024-05-01T12:00:00"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("since", ["0.5", "1700000000", "-1"])
async def test_list_activity_since_as_a_number_is_422(
    client: httpx.AsyncClient, since: str
) -> None:
    # Pydantic would read these as Unix timestamps; the document promises date-time text.
    response = await client.get("/v1/activity", params={"since": since})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_list_activity_filters_combine(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record(sessionmaker, "a@example.org", status=activity.REJECTED)
    await record(sessionmaker, "b@example.org", status=activity.FORWARDED)
    await record(sessionmaker, "c@example.net", status=activity.FORWARDED)
    assert await addresses(client, domain="example.org", status="forwarded") == ["b@example.org"]


# Paging


async def test_list_activity_limit_gives_the_newest(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@example.org", "b@example.org", "c@example.org"])
    page = await listed(client, limit=2)
    assert [item["address"] for item in page["items"]] == ["c@example.org", "b@example.org"]
    assert page["next_before"] == page["items"][-1]["id"]


async def test_list_activity_before_continues_where_the_page_ended(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@example.org", "b@example.org", "c@example.org"])
    first = await listed(client, limit=2)
    second = await listed(client, limit=2, before=first["next_before"])
    assert second == {"items": [second["items"][0]], "next_before": None}
    assert second["items"][0]["address"] == "a@example.org"


async def test_list_activity_before_keeps_the_filters(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(
        sessionmaker, ["a@example.org", "x@example.net", "b@example.org", "c@example.org"]
    )
    first = await listed(client, domain="example.org", limit=2)
    second = await listed(client, domain="example.org", limit=2, before=first["next_before"])
    assert [item["address"] for item in second["items"]] == ["a@example.org"]


async def test_list_activity_short_page_has_no_next_before(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    await record_each(sessionmaker, ["a@example.org"])
    assert (await listed(client, limit=2))["next_before"] is None


@pytest.mark.parametrize("limit", [0, 501])
async def test_list_activity_limit_out_of_range_is_422(
    client: httpx.AsyncClient, limit: int
) -> None:
    response = await client.get("/v1/activity", params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
