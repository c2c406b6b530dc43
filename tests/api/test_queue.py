"""/v1/queue: what waits for delivery; retrying a delivery now, or giving it up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Delivery, Message
from app.db.types import utcnow
from app.routing import Decision, MatchKind, Outcome
from app.routing.srs import Srs
from app.services import inbound, outbox, queue
from tests.conftest import HOSTNAME
from tests.matchers import Recent

Sessionmaker = async_sessionmaker[AsyncSession]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SENDER = "alice@sender.example"
LEASE = timedelta(minutes=10)
UNLIMITED_OCTETS = 2**40  # a claim cut by its count only


async def queue_inbound(
    sessionmaker: Sessionmaker,
    destinations: tuple[str, ...] = ("me@inbox.example",),
    *,
    queue_id: str = "17b1e07a15b7",
    now: datetime = T0,
) -> list[int]:
    """Store a message as the SMTP server does for shop@example.org; the delivery ids."""
    decision = Decision(
        Outcome.FORWARD, "forwarded by test", matched_by=MatchKind.EXACT, destinations=destinations
    )
    arrival = inbound.Arrival(
        queue_id=queue_id,
        client_ip="192.0.2.1",
        helo="client.example",
        mail_from=SENDER,
        content=b"Subject: hi\r\n\r\nHello\r\n",
        message_id="<1@sender.example>",
    )
    async with session_scope(sessionmaker) as session:
        incoming = [inbound.Incoming(arrival, [inbound.Accepted("shop@example.org", decision)])]
        srs = Srs("test-srs-secret-0123456789", HOSTNAME)
        (stored,) = await session.run_sync(
            lambda sync: inbound.store(
                sync, incoming, srs=srs, queue_lifetime=timedelta(days=5), now=now
            )
        )
    return stored.delivery_ids


async def queue_ours(sessionmaker: Sessionmaker, recipient: str = "me@inbox.example") -> Message:
    """A message we write ourselves (a verification mail), queued through the outbox."""
    message = outbox.compose(
        sender=f"mailroute-noreply@{HOSTNAME}",
        sender_name="mailroute",
        recipient=recipient,
        subject="Confirm",
        text="Click",
        hostname=HOSTNAME,
    )
    async with session_scope(sessionmaker) as session:
        return await outbox.enqueue(
            session,
            message,
            kind="verification",
            mail_from=f"mailroute-noreply@{HOSTNAME}",
            recipients=[recipient],
        )


async def finish(sessionmaker: Sessionmaker, delivery_id: int, status: str) -> None:
    async with session_scope(sessionmaker) as session:
        delivery = await session.get(Delivery, delivery_id)
        assert delivery is not None
        queue.finish(delivery, status, remote="mx[192.0.2.7]", reply="250 ok", now=utcnow())


async def defer(sessionmaker: Sessionmaker, delivery_id: int, retry_at: datetime) -> None:
    async with session_scope(sessionmaker) as session:
        delivery = await session.get(Delivery, delivery_id)
        assert delivery is not None
        queue.defer(
            delivery,
            remote="mx.inbox.example[192.0.2.7]",
            reply="451 4.3.0 try later",
            retry_at=retry_at,
            now=utcnow(),
        )


async def claim(sessionmaker: Sessionmaker, delivery_id: int, until: datetime) -> None:
    async with session_scope(sessionmaker) as session:
        now = utcnow()
        assert await session.run_sync(
            lambda sync: queue.claim(sync, [delivery_id], "worker-a", now, until)
        )


async def deliveries(sessionmaker: Sessionmaker) -> list[Delivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.id)))


async def messages(sessionmaker: Sessionmaker) -> list[Message]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Message).order_by(Message.id)))


async def listed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/v1/queue")
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# GET /v1/queue


async def test_list_queue_empty(client: httpx.AsyncClient) -> None:
    assert await listed(client) == []


async def test_list_queue_shows_an_inbound_delivery(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    [item] = await listed(client)
    assert item == {
        "id": delivery_id,
        "queue_id": "17b1e07a15b7",
        "status": "queued",
        "original_rcpt": "shop@example.org",
        "recipient": "me@inbox.example",
        "mail_from": item["mail_from"],
        "attempts": 0,
        "next_attempt_at": "2024-05-01T12:00:00Z",
        "expires_at": "2024-05-06T12:00:00Z",
        "last_remote": None,
        "last_reply": None,
        "created_at": "2024-05-01T12:00:00Z",
    }
    assert item["mail_from"].startswith("SRS0=")


async def test_list_queue_shows_our_own_mail_with_its_queue_id(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    message = await queue_ours(sessionmaker)
    [item] = await listed(client)
    assert (item["queue_id"], item["recipient"], item["attempts"]) == (
        message.queue_id,
        "me@inbox.example",
        0,
    )
    assert item["next_attempt_at"] == Recent()


async def test_list_queue_shows_a_deferred_attempt(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await defer(sessionmaker, delivery_id, datetime(2030, 1, 1, tzinfo=UTC))
    [item] = await listed(client)
    assert (item["attempts"], item["next_attempt_at"], item["last_reply"]) == (
        1,
        "2030-01-01T00:00:00Z",
        "451 4.3.0 try later",
    )
    assert item["last_remote"] == "mx.inbox.example[192.0.2.7]"


async def test_list_queue_shows_one_being_attempted(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await claim(sessionmaker, delivery_id, utcnow() + LEASE)
    assert [item["status"] for item in await listed(client)] == ["delivering"]


async def test_list_queue_hides_delivered(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    first, second = await queue_inbound(sessionmaker, ("me@inbox.example", "other@inbox.example"))
    await finish(sessionmaker, first, queue.DELIVERED)
    assert [item["id"] for item in await listed(client)] == [second]


async def test_list_queue_hides_failed(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    first, second = await queue_inbound(sessionmaker, ("me@inbox.example", "other@inbox.example"))
    await finish(sessionmaker, first, queue.FAILED)
    assert [item["id"] for item in await listed(client)] == [second]


async def test_list_queue_soonest_first(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [later] = await queue_inbound(sessionmaker, queue_id="aaaaaaaaaaaa")
    [sooner] = await queue_inbound(sessionmaker, queue_id="bbbbbbbbbbbb")
    await defer(sessionmaker, later, datetime(2030, 1, 1, tzinfo=UTC))
    assert [item["id"] for item in await listed(client)] == [sooner, later]


# POST /v1/queue/{id}/retry


async def test_retry_queue_item_makes_it_due_now(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await defer(sessionmaker, delivery_id, utcnow() + timedelta(hours=1))
    response = await client.post(f"/v1/queue/{delivery_id}/retry")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["next_attempt_at"]) == (delivery_id, Recent())
    [delivery] = await deliveries(sessionmaker)
    assert delivery.next_attempt_at <= utcnow()


async def test_retry_queue_item_is_claimed_by_the_next_worker_step(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await defer(sessionmaker, delivery_id, utcnow() + timedelta(hours=1))
    await client.post(f"/v1/queue/{delivery_id}/retry")
    async with session_scope(sessionmaker) as session:
        now = utcnow()
        batch = await session.run_sync(
            lambda sync: queue.claim_due(
                sync, "worker-a", now, limit=10, lease=LEASE, max_octets=UNLIMITED_OCTETS
            )
        )
    assert [d.id for d in batch.deliveries] == [delivery_id]


async def test_retry_queue_item_keeps_its_history(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await defer(sessionmaker, delivery_id, utcnow() + timedelta(hours=1))
    body = (await client.post(f"/v1/queue/{delivery_id}/retry")).json()
    assert (body["status"], body["attempts"], body["last_reply"]) == (
        "queued",
        1,
        "451 4.3.0 try later",
    )


async def test_retry_queue_item_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/queue/999/retry")
    assert response.status_code == 404
    assert response.json() == error("queue_item_not_found", "no delivery 999 waits in the queue")


async def test_retry_queue_item_delivered_is_404(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    first, _second = await queue_inbound(sessionmaker, ("me@inbox.example", "other@inbox.example"))
    await finish(sessionmaker, first, queue.DELIVERED)
    response = await client.post(f"/v1/queue/{first}/retry")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "queue_item_not_found"


async def test_retry_queue_item_being_attempted_is_409(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await claim(sessionmaker, delivery_id, utcnow() + LEASE)
    response = await client.post(f"/v1/queue/{delivery_id}/retry")
    assert response.status_code == 409
    assert response.json() == error(
        "queue_item_busy", f"delivery {delivery_id} is being attempted right now"
    )


async def test_retry_queue_item_being_attempted_is_left_alone(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    until = utcnow() + LEASE
    await claim(sessionmaker, delivery_id, until)
    await client.post(f"/v1/queue/{delivery_id}/retry")
    [delivery] = await deliveries(sessionmaker)
    assert (delivery.status, delivery.claimed_by, delivery.next_attempt_at) == (
        "delivering",
        "worker-a",
        T0,
    )


async def test_retry_queue_item_whose_claim_lapsed_is_allowed(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await claim(sessionmaker, delivery_id, utcnow() - timedelta(minutes=1))
    response = await client.post(f"/v1/queue/{delivery_id}/retry")
    assert response.status_code == 200
    assert response.json()["next_attempt_at"] == Recent()


async def test_retry_queue_item_id_out_of_range_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/queue/0/retry")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


# DELETE /v1/queue/{id}


async def test_delete_queue_item_is_204(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    response = await client.delete(f"/v1/queue/{delivery_id}")
    assert (response.status_code, response.content) == (204, b"")


async def test_delete_queue_item_leaves_the_queue(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    first, second = await queue_inbound(sessionmaker, ("me@inbox.example", "other@inbox.example"))
    await client.delete(f"/v1/queue/{first}")
    assert [item["id"] for item in await listed(client)] == [second]
    assert [d.id for d in await deliveries(sessionmaker)] == [second]


async def test_delete_queue_item_last_one_deletes_the_message(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await client.delete(f"/v1/queue/{delivery_id}")
    assert await messages(sessionmaker) == []


async def test_delete_queue_item_keeps_the_message_while_others_wait(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    first, _second = await queue_inbound(sessionmaker, ("me@inbox.example", "other@inbox.example"))
    await client.delete(f"/v1/queue/{first}")
    assert [m.queue_id for m in await messages(sessionmaker)] == ["17b1e07a15b7"]


async def test_delete_queue_item_twice_is_404(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    [delivery_id] = await queue_inbound(sessionmaker)
    await client.delete(f"/v1/queue/{delivery_id}")
    response = await client.delete(f"/v1/queue/{delivery_id}")
    assert response.status_code == 404
    assert response.json() == error(
        "queue_item_not_found", f"no delivery {delivery_id} waits in the queue"
    )


async def test_delete_queue_item_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/queue/999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "queue_item_not_found"


async def test_delete_queue_item_failed_is_404(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    first, _second = await queue_inbound(sessionmaker, ("me@inbox.example", "other@inbox.example"))
    await finish(sessionmaker, first, queue.FAILED)
    response = await client.delete(f"/v1/queue/{first}")
    assert response.status_code == 404


async def test_delete_queue_item_being_attempted_is_409(
    client: httpx.AsyncClient, sessionmaker: Sessionmaker
) -> None:
    # As for retry: the worker sending it will record its outcome on this very row.
    [delivery_id] = await queue_inbound(sessionmaker)
    await claim(sessionmaker, delivery_id, utcnow() + LEASE)
    response = await client.delete(f"/v1/queue/{delivery_id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "queue_item_busy"
