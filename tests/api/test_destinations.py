"""/v1/destinations: adding inboxes (checked in DNS), mailing their verification link,
listing, resending and removing them."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.app import create_app
from app.api.context import ApiContext
from app.db.engine import create_engine, create_sessionmaker
from app.db.models import Delivery, Message, VerificationSend, VerificationToken
from app.resolver import MxRecord
from app.services.verification_limits import RESEND_COOLDOWN
from tests.api.verification import add_destination, link_token, parse, time_passes
from tests.conftest import HOSTNAME
from tests.fakes import FakeResolver
from tests.matchers import Recent

SENDER = f"mailroute-noreply@{HOSTNAME}"


def pending(destination_id: int, address: str) -> dict:
    return {
        "id": destination_id,
        "email": address,
        "status": "pending",
        "verified_at": None,
        "created_at": Recent(),
    }


def error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


async def stored_messages(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Message]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Message).order_by(Message.id)))


async def stored_deliveries(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Delivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.id)))


async def sends_of(sessionmaker: async_sessionmaker[AsyncSession]) -> list[datetime]:
    async with sessionmaker() as session:
        query = select(VerificationSend.sent_at).order_by(VerificationSend.sent_at)
        return list(await session.scalars(query))


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    seconds = int(response.headers["retry-after"])
    assert response.json()["error"]["message"].endswith(f"; retry in {seconds} s")
    return seconds


# --- POST /v1/destinations ----------------------------------------------------------------


async def test_create_destination_returns_it_pending(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/destinations", json={"email": "me@inbox.example"})

    assert response.status_code == 201
    assert response.json() == pending(response.json()["id"], "me@inbox.example")


async def test_create_destination_lowercases_domain_only(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/destinations", json={"email": "Me.Myself@INBOX.Example"})

    assert response.status_code == 201
    assert response.json()["email"] == "Me.Myself@inbox.example"


async def test_create_destination_refuses_invalid_address(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/destinations", json={"email": "not-an-address"})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_address"


async def test_create_destination_refuses_null_mx(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    resolver.mx_records["nomail.example"] = [MxRecord(0, "")]  # RFC 7505

    response = await client.post("/v1/destinations", json={"email": "me@nomail.example"})

    assert response.status_code == 422
    assert response.json() == error(
        "undeliverable_domain", "nomail.example publishes a null MX: it accepts no mail"
    )


async def test_create_destination_nxdomain_does_not_block(client: httpx.AsyncClient) -> None:
    # Only a published null MX refuses; what this host's resolver cannot see may still be
    # reachable (split horizon, smarthost), and delivery of the verification mail decides.
    response = await client.post("/v1/destinations", json={"email": "me@nowhere.example"})

    assert response.status_code == 201
    assert response.json() == pending(response.json()["id"], "me@nowhere.example")


async def test_create_destination_accepts_domain_with_address_only(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    # RFC 5321 5.1: without MX records, the domain's address is the implicit MX.
    resolver.address_records["host.example"] = ["93.184.215.14"]  # global unicast

    response = await client.post("/v1/destinations", json={"email": "me@host.example"})

    assert response.status_code == 201
    assert response.json()["email"] == "me@host.example"


async def test_create_destination_dns_failure_does_not_block(
    client: httpx.AsyncClient, resolver: FakeResolver
) -> None:
    resolver.failing.add("flaky.example")

    response = await client.post("/v1/destinations", json={"email": "me@flaky.example"})

    assert response.status_code == 201
    assert response.json() == pending(response.json()["id"], "me@flaky.example")


async def test_create_destination_refuses_duplicate(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")

    response = await client.post("/v1/destinations", json={"email": "me@inbox.example"})

    assert response.status_code == 409
    assert response.json() == error(
        "destination_exists", f"me@inbox.example is already a destination (id {created['id']})"
    )


async def test_create_destination_refuses_duplicate_in_other_case(
    client: httpx.AsyncClient,
) -> None:
    await add_destination(client, "me@inbox.example")

    response = await client.post("/v1/destinations", json={"email": "ME@Inbox.EXAMPLE"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "destination_exists"


async def test_create_destination_refused_queues_no_mail(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/v1/destinations", json={"email": "me@nomail.example"})

    assert response.status_code == 422
    assert await stored_messages(sessionmaker) == []
    assert await stored_deliveries(sessionmaker) == []


async def test_create_destination_queues_one_verification_message(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_destination(client, "me@inbox.example")

    messages = await stored_messages(sessionmaker)

    assert [(m.kind, m.mail_from) for m in messages] == [("verification", SENDER)]
    assert messages[0].size == len(messages[0].content)


async def test_create_destination_queues_one_delivery_to_the_destination(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_destination(client, "me@inbox.example")
    [message] = await stored_messages(sessionmaker)

    deliveries = await stored_deliveries(sessionmaker)

    assert [
        (d.message_id, d.original_rcpt, d.recipient, d.mail_from, d.status, d.rule_id)
        for d in deliveries
    ] == [(message.id, "me@inbox.example", "me@inbox.example", SENDER, "queued", None)]


async def test_create_destination_delivery_is_due_now(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_destination(client, "me@inbox.example")

    [delivery] = await stored_deliveries(sessionmaker)

    assert delivery.next_attempt_at <= datetime.now(UTC)
    assert delivery.expires_at > datetime.now(UTC) + timedelta(days=1)


async def test_create_destination_message_headers(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_destination(client, "me@inbox.example")
    [message] = await stored_messages(sessionmaker)

    parsed = parse(message)

    assert parsed["To"] == "me@inbox.example"
    assert parsed["From"] == f"mailroute <{SENDER}>"
    assert parsed["Subject"] == "Confirm forwarding to this address"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"] == message.message_id
    assert message.message_id is not None and message.message_id.endswith(f"@{HOSTNAME}>")


async def test_create_destination_message_holds_verification_link(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    destination = await add_destination(client, "me@inbox.example")
    [message] = await stored_messages(sessionmaker)

    token = link_token(message)

    page = await client.get(f"/v1/verify/{token}")
    assert page.status_code == 200
    assert destination["email"] in page.text


async def test_create_destination_stores_only_hash_of_link(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_destination(client, "me@inbox.example")
    [message] = await stored_messages(sessionmaker)
    token = link_token(message)

    async with sessionmaker() as session:
        [row] = await session.scalars(select(VerificationToken))

    assert token not in row.token_hash
    assert len(row.token_hash) == 64


async def test_create_destination_accepts_internationalized_address(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/v1/destinations", json={"email": "jörg@inbox.example"})

    assert response.status_code == 201
    assert response.json()["email"] == "jörg@inbox.example"
    [message] = await stored_messages(sessionmaker)
    assert parse(message)["To"] == "jörg@inbox.example"


# --- GET /v1/destinations -----------------------------------------------------------------


async def test_list_destinations_is_empty_at_first(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/destinations")

    assert response.status_code == 200
    assert response.json() == []


async def test_list_destinations_orders_by_email(client: httpx.AsyncClient) -> None:
    zoe = await add_destination(client, "zoe@inbox.example")
    adam = await add_destination(client, "adam@inbox.example")

    response = await client.get("/v1/destinations")

    assert response.status_code == 200
    assert response.json() == [
        pending(adam["id"], "adam@inbox.example"),
        pending(zoe["id"], "zoe@inbox.example"),
    ]


# --- GET /v1/destinations/{id} ------------------------------------------------------------


async def test_get_destination_returns_it(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")

    response = await client.get(f"/v1/destinations/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_get_destination_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/destinations/999")

    assert response.status_code == 404
    assert response.json() == error("destination_not_found", "no destination with id 999")


async def test_get_destination_non_numeric_id_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/destinations/me@inbox.example")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


# --- POST /v1/destinations/{id}/resend ----------------------------------------------------


async def test_resend_verification_returns_the_destination(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await time_passes(sessionmaker)

    response = await client.post(f"/v1/destinations/{created['id']}/resend")

    assert response.status_code == 200
    assert response.json() == created


async def test_resend_verification_queues_a_new_message(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await time_passes(sessionmaker)
    await client.post(f"/v1/destinations/{created['id']}/resend")

    messages = await stored_messages(sessionmaker)
    deliveries = await stored_deliveries(sessionmaker)

    assert [m.kind for m in messages] == ["verification", "verification"]
    assert [d.recipient for d in deliveries] == ["me@inbox.example", "me@inbox.example"]
    assert link_token(messages[0]) != link_token(messages[1])


async def test_resend_verification_of_verified_destination_is_409(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    [message] = await stored_messages(sessionmaker)
    confirmed = await client.post(f"/v1/verify/{link_token(message)}")
    assert confirmed.status_code == 200

    response = await client.post(f"/v1/destinations/{created['id']}/resend")

    assert response.status_code == 409
    assert response.json() == error("already_verified", "me@inbox.example is already verified")


async def test_resend_verification_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/destinations/999/resend")

    assert response.status_code == 404
    assert response.json() == error("destination_not_found", "no destination with id 999")


async def test_resend_verification_within_five_minutes_of_the_first_is_429(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")

    response = await client.post(f"/v1/destinations/{created['id']}/resend")

    seconds = retry_after(response)
    assert 295 <= seconds <= 300
    assert response.json() == error(
        "resend_limited",
        "a verification message was sent to me@inbox.example less than 5 minutes ago; "
        f"retry in {seconds} s",
    )
    assert len(await stored_messages(sessionmaker)) == 1


async def test_resend_verification_retry_after_counts_down(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await time_passes(sessionmaker, timedelta(minutes=4))

    response = await client.post(f"/v1/destinations/{created['id']}/resend")

    assert retry_after(response) in (59, 60)


async def test_resend_verification_five_minutes_after_the_last_is_sent(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await time_passes(sessionmaker)
    first = await client.post(f"/v1/destinations/{created['id']}/resend")

    second = await client.post(f"/v1/destinations/{created['id']}/resend")

    assert first.status_code == 200
    assert 295 <= retry_after(second) <= 300
    assert len(await stored_messages(sessionmaker)) == 2


async def test_resend_verification_ten_a_day(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    statuses = []
    for _ in range(9):
        await time_passes(sessionmaker)
        statuses.append((await client.post(f"/v1/destinations/{created['id']}/resend")).status_code)
    await time_passes(sessionmaker)

    response = await client.post(f"/v1/destinations/{created['id']}/resend")

    assert statuses == [200] * 9
    first_send = (await sends_of(sessionmaker))[0]
    expected = (first_send + timedelta(days=1) - datetime.now(UTC)).total_seconds()
    assert abs(retry_after(response) - expected) <= 2
    assert response.json()["error"]["message"].startswith(
        "me@inbox.example was sent 10 verification messages in the last 24 hours; "
    )
    assert len(await stored_messages(sessionmaker)) == 10


async def test_resend_verification_allowed_again_a_day_after(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    for _ in range(9):
        await time_passes(sessionmaker)
        await client.post(f"/v1/destinations/{created['id']}/resend")
    await time_passes(sessionmaker, timedelta(days=1) - 9 * RESEND_COOLDOWN)

    response = await client.post(f"/v1/destinations/{created['id']}/resend")

    assert response.status_code == 200
    assert len(await stored_messages(sessionmaker)) == 11
    assert len(await sends_of(sessionmaker)) == 10  # the one a day old is forgotten


async def test_resend_verification_limits_each_destination_alone(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    mine = await add_destination(client, "me@inbox.example")
    await time_passes(sessionmaker)
    theirs = await add_destination(client, "you@inbox.example")
    await client.post(f"/v1/destinations/{mine['id']}/resend")

    limited = await client.post(f"/v1/destinations/{theirs['id']}/resend")

    assert limited.status_code == 429
    assert (await client.post(f"/v1/destinations/{mine['id']}/resend")).status_code == 429
    await time_passes(sessionmaker)
    assert (await client.post(f"/v1/destinations/{theirs['id']}/resend")).status_code == 200


async def test_resend_verification_concurrent_requests_send_one(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await time_passes(sessionmaker)

    responses = await asyncio.gather(
        *(client.post(f"/v1/destinations/{created['id']}/resend") for _ in range(5))
    )

    assert sorted(r.status_code for r in responses) == [200] + [429] * 4
    assert len(await stored_messages(sessionmaker)) == 2


async def test_resend_verification_limit_is_kept_in_the_database(
    client: httpx.AsyncClient, api_context: ApiContext, api_token: str, database_url: str
) -> None:
    # Another node (or this one restarted): its own engine and app, the same count.
    created = await add_destination(client, "me@inbox.example")
    engine = create_engine(database_url)
    other = dataclasses.replace(api_context, sessionmaker=create_sessionmaker(engine))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(other)),
            base_url="http://other.test",
            headers={"Authorization": f"Bearer {api_token}"},
        ) as elsewhere:
            response = await elsewhere.post(f"/v1/destinations/{created['id']}/resend")
    finally:
        await engine.dispose()

    assert response.status_code == 429


async def test_resend_verification_deleted_destination_forgets_its_sends(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await client.delete(f"/v1/destinations/{created['id']}")

    assert await sends_of(sessionmaker) == []


# --- DELETE /v1/destinations/{id} ---------------------------------------------------------


async def test_delete_destination_answers_204_without_body(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")

    response = await client.delete(f"/v1/destinations/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""


async def test_delete_destination_removes_it(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")
    await client.delete(f"/v1/destinations/{created['id']}")

    response = await client.get("/v1/destinations")

    assert response.json() == []


async def test_delete_destination_lets_the_address_be_added_again(
    client: httpx.AsyncClient,
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await client.delete(f"/v1/destinations/{created['id']}")

    response = await client.post("/v1/destinations", json={"email": "me@inbox.example"})

    assert response.status_code == 201


async def test_delete_destination_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/destinations/999")

    assert response.status_code == 404
    assert response.json() == error("destination_not_found", "no destination with id 999")


async def test_delete_destination_used_by_alias_is_409(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")
    assert (await client.post("/v1/domains", json={"name": "example.org"})).status_code == 201
    alias = await client.post(
        "/v1/domains/example.org/aliases",
        json={"local_part": "shop", "destinations": ["me@inbox.example"]},
    )
    assert alias.status_code == 201, alias.text

    response = await client.delete(f"/v1/destinations/{created['id']}")

    assert response.status_code == 409
    assert response.json() == error(
        "destination_in_use",
        "me@inbox.example is used by 1 rule(s); remove it from them first",
    )


async def test_delete_destination_used_by_alias_keeps_it(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")
    await client.post("/v1/domains", json={"name": "example.org"})
    await client.post(
        "/v1/domains/example.org/aliases",
        json={"local_part": "shop", "destinations": ["me@inbox.example"]},
    )
    await client.delete(f"/v1/destinations/{created['id']}")

    response = await client.get(f"/v1/destinations/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_delete_destination_used_by_catch_all_is_409(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")
    await client.post("/v1/domains", json={"name": "example.org"})
    catch_all = await client.put(
        "/v1/domains/example.org/catch-all",
        json={"enabled": True, "destinations": ["me@inbox.example"]},
    )
    assert catch_all.status_code == 200, catch_all.text

    response = await client.delete(f"/v1/destinations/{created['id']}")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "destination_in_use"


async def test_delete_destination_no_longer_used_succeeds(client: httpx.AsyncClient) -> None:
    created = await add_destination(client, "me@inbox.example")
    await client.post("/v1/domains", json={"name": "example.org"})
    await client.post(
        "/v1/domains/example.org/aliases",
        json={"local_part": "shop", "destinations": ["me@inbox.example"]},
    )
    await client.delete("/v1/domains/example.org/aliases/shop")

    response = await client.delete(f"/v1/destinations/{created['id']}")

    assert response.status_code == 204


async def test_delete_destination_removes_its_verification_links(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await add_destination(client, "me@inbox.example")
    await client.delete(f"/v1/destinations/{created['id']}")

    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(VerificationToken))

    assert count == 0


# --- the verification mail: nothing in the address can add a header field -----------------

VERIFICATION_FIELDS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
]
INJECTED_ADDRESSES = {
    "CRLF": "me@inbox.example\r\nBcc: victim@evil.example",
    "bare LF": "me@inbox.example\nBcc: victim@evil.example",
    "bare CR": "me@inbox.example\rBcc: victim@evil.example",
    "quoted CRLF": '"me\r\nBcc: victim@evil.example"@inbox.example',
    "NEL": "me\x85Bcc: victim@evil.example@inbox.example",
    "line separator": "me\u2028Bcc: victim@evil.example@inbox.example",
    "header-like": "me@inbox.example Bcc: victim@evil.example",
    "two addresses": "me@inbox.example>, <victim@evil.example",
    "display name": "Me <me@inbox.example>",
}


@pytest.mark.parametrize("address", INJECTED_ADDRESSES.values(), ids=INJECTED_ADDRESSES.keys())
async def test_create_destination_injected_address_is_422_and_mails_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], address: str
) -> None:
    response = await client.post("/v1/destinations", json={"email": address})

    assert response.status_code == 422
    assert set(response.json()["error"]) >= {"code", "message"}
    assert await stored_messages(sessionmaker) == []
    assert (await client.get("/v1/destinations")).json() == []


@pytest.mark.parametrize("address", ["me@inbox.example", "j\u00f6rg@inbox.example"])
async def test_create_destination_message_has_exactly_our_fields(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], address: str
) -> None:
    await add_destination(client, address)
    [message] = await stored_messages(sessionmaker)

    parsed = BytesParser(policy=email.policy.SMTPUTF8).parsebytes(message.content)

    assert parsed.keys() == VERIFICATION_FIELDS
    assert str(parsed["To"]) == address
    assert all(b"\r" not in line and b"\n" not in line for line in message.content.split(b"\r\n"))
