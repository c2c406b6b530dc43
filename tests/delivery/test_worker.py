"""The delivery worker end to end: queued rows in a real database, a real SMTP sink.

Every test runs on SQLite and on PostgreSQL. The worker's clock and jitter are injected,
so retry times are exact: with ``jitter=0.5`` the first retry comes 60 s later.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email import policy
from email.message import Message as EmailPart
from email.parser import BytesParser
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Activity, Delivery, Message
from app.delivery.mx import Target
from app.delivery.worker import DeliveryWorker, WorkerConfig, retry_delay
from app.resolver import MxRecord
from app.routing.networks import DeliveryNetworks
from app.services import activity, outbox, queue
from tests.conftest import HOSTNAME
from tests.delivery.arrivals import ALIAS, CONTENT, DESTINATION, SENDER, queue_inbound
from tests.delivery.conftest import Clock
from tests.delivery.sink import Sink
from tests.fakes import FakeResolver

LEASE = timedelta(minutes=10)
UNLIMITED_OCTETS = 2**40  # a claim cut by its count only

Sessionmaker = async_sessionmaker[AsyncSession]
Rows = Callable[[Sessionmaker], Awaitable[list[Any]]]
# The sinks listen on loopback, which MX delivery refuses unless allowed.
LOOPBACK = DeliveryNetworks(allowed=(ipaddress.ip_network("127.0.0.0/8"),))


def smarthost(sink: Sink) -> WorkerConfig:
    return WorkerConfig(hostname=HOSTNAME, smarthost=Target("sink", sink.host, sink.port))


def make_worker(
    sessionmaker: Sessionmaker,
    config: WorkerConfig,
    clock: Clock,
    resolver: FakeResolver | None = None,
) -> DeliveryWorker:
    return DeliveryWorker(
        sessionmaker, resolver or FakeResolver(), config, clock=clock, jitter=lambda: 0.5
    )


@pytest.fixture
def worker(sessionmaker: Sessionmaker, sink: Sink, clock: Clock) -> DeliveryWorker:
    return make_worker(sessionmaker, smarthost(sink), clock)


async def all_deliveries(sessionmaker: Sessionmaker) -> list[Delivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.id)))


async def waiting(sessionmaker: Sessionmaker) -> list[Delivery]:
    async with sessionmaker() as session:
        return await queue.list_waiting(session)


async def all_messages(sessionmaker: Sessionmaker) -> list[Message]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Message).order_by(Message.id)))


async def activity_log(sessionmaker: Sessionmaker) -> list[Activity]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Activity).order_by(Activity.id)))


async def dsn_messages(sessionmaker: Sessionmaker) -> list[Message]:
    return [m for m in await all_messages(sessionmaker) if m.kind == "dsn"]


def per_recipient_status(content: bytes) -> EmailPart:
    report = BytesParser(policy=policy.default).parsebytes(content)
    status_part = [p for p in report.walk() if p.get_content_type() == "message/delivery-status"]
    blocks = status_part[0].get_payload()
    assert isinstance(blocks, list)
    return blocks[1]


# Delivered


async def test_worker_delivers_to_the_sink(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    assert await worker.run_once() == 1
    assert [(r.rcpt_tos, r.content) for r in sink.received] == [([DESTINATION], CONTENT)]


async def test_worker_logs_the_inbound_verdicts_with_each_attempt(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    verdicts = {
        "spf": "pass",
        "dkim": "none",
        "dmarc": "fail",
        "arc": "none",
        "spam_score": 2.5,
        "spam_action": "no action",
    }
    await queue_inbound(sessionmaker, clock, verdicts=verdicts)
    await worker.run_once()
    async with sessionmaker() as session:
        [row] = await session.scalars(select(Activity))
    assert row.status == activity.FORWARDED
    assert {name: getattr(row, name) for name in activity.VERDICT_COLUMNS} == verdicts


async def test_worker_sends_with_the_srs_sender(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    await worker.run_once()
    mail_from = sink.received[0].mail_from
    assert mail_from.startswith("SRS0=")
    assert mail_from.endswith(f"=sender.example=alice@{HOSTNAME}")


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(waiting, id="queue"),
        pytest.param(all_messages, id="message"),
        pytest.param(all_deliveries, id="delivery"),
    ],
)
async def test_worker_delivered_leaves_nothing_behind(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, clock: Clock, rows: Rows
) -> None:
    await queue_inbound(sessionmaker, clock)
    await worker.run_once()
    assert await rows(sessionmaker) == []
    assert await worker.run_once() == 0


async def test_worker_delivered_logs_forwarded_with_remote_and_reply(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    await worker.run_once()
    [row] = await activity_log(sessionmaker)
    assert (row.status, row.action, row.address, row.destination) == (
        "forwarded",
        "forward",
        ALIAS,
        DESTINATION,
    )
    assert row.remote_host == "sink[127.0.0.1]"
    assert row.reply == "250 2.0.0 OK: queued as 1"
    assert row.mail_from == SENDER
    assert row.at == clock()


@pytest.mark.parametrize(
    ("mx_records", "address_records"),
    [
        pytest.param(
            [MxRecord(10, "mx.inbox.example")], {"mx.inbox.example": ["127.0.0.1"]}, id="its_mx"
        ),
        # 127.0.0.2 is loopback too, but nothing listens there on the sink's port.
        pytest.param(
            [MxRecord(10, "down.inbox.example"), MxRecord(20, "mx.inbox.example")],
            {"down.inbox.example": ["127.0.0.2"], "mx.inbox.example": ["127.0.0.1"]},
            id="the_next_mx_when_one_is_down",
        ),
    ],
)
async def test_worker_delivers_to_the_mx_of_the_domain(
    sessionmaker: Sessionmaker,
    sink: Sink,
    clock: Clock,
    mx_records: list[MxRecord],
    address_records: dict[str, list[str]],
) -> None:
    resolver = FakeResolver(
        mx_records={"inbox.example": mx_records}, address_records=address_records
    )
    config = WorkerConfig(hostname=HOSTNAME, delivery_port=sink.port, networks=LOOPBACK)
    worker = make_worker(sessionmaker, config, clock, resolver)
    await queue_inbound(sessionmaker, clock)
    await worker.run_once()
    assert len(sink.received) == 1
    [row] = await activity_log(sessionmaker)
    assert row.remote_host == "mx.inbox.example[127.0.0.1]"


async def test_worker_does_not_connect_to_an_mx_on_loopback_by_default(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    resolver = FakeResolver(
        mx_records={"inbox.example": [MxRecord(10, "localhost")]},
        address_records={"localhost": ["127.0.0.1", "::1"]},
    )
    worker = make_worker(
        sessionmaker, WorkerConfig(hostname=HOSTNAME, delivery_port=sink.port), clock, resolver
    )
    await queue_inbound(sessionmaker, clock)
    await worker.run_once()
    assert sink.received == []
    [row, *_] = await activity_log(sessionmaker)
    assert row.status == "bounced"
    assert row.reply is not None and row.reply.startswith("554 5.4.4 ")
    [bounce] = await dsn_messages(sessionmaker)
    assert per_recipient_status(bounce.content)["Status"] == "5.4.4"


async def test_worker_uses_one_connection_per_domain(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock, destinations=(DESTINATION, "other@inbox.example"))
    assert await worker.run_once() == 2
    assert sorted(r.rcpt_tos[0] for r in sink.received) == [DESTINATION, "other@inbox.example"]
    assert len({r.peer for r in sink.received}) == 1


# Deferred


async def test_worker_temporary_failure_defers_a_minute(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("451 4.3.0 try later")
    await worker.run_once()
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("queued", 1)
    assert delivery.next_attempt_at == clock() + timedelta(seconds=60)
    assert delivery.last_reply == "451 4.3.0 try later"
    assert delivery.claimed_by is None


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        pytest.param("451 4.3.0 try later", "deferred", id="deferred"),
        pytest.param("550 5.1.1 no such user", "bounced", id="bounced"),
    ],
)
async def test_worker_refused_logs_the_reply(
    worker: DeliveryWorker,
    sessionmaker: Sessionmaker,
    sink: Sink,
    clock: Clock,
    reply: str,
    status: str,
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt(reply)
    await worker.run_once()
    [row] = await activity_log(sessionmaker)
    assert (row.status, row.reply, row.remote_host, row.address) == (
        status,
        reply,
        "sink[127.0.0.1]",
        ALIAS,
    )


async def test_worker_deferred_is_not_retried_before_its_time(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("451 4.3.0 try later")
    await worker.run_once()
    clock.advance(timedelta(seconds=59))
    assert await worker.run_once() == 0
    assert sink.received == []


async def test_worker_destination_down_then_back_delivers(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.stop()
    await worker.run_once()
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("queued", 1)
    sink.start()
    clock.advance(timedelta(seconds=61))
    assert await worker.run_once() == 1
    assert [r.rcpt_tos for r in sink.received] == [[DESTINATION]]
    assert [row.status for row in await activity_log(sessionmaker)] == ["deferred", "forwarded"]


async def test_worker_dns_failure_defers(sessionmaker: Sessionmaker, clock: Clock) -> None:
    resolver = FakeResolver(failing={"inbox.example"})
    worker = make_worker(sessionmaker, WorkerConfig(hostname=HOSTNAME), clock, resolver)
    await queue_inbound(sessionmaker, clock)
    await worker.run_once()
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("queued", 1)


async def test_worker_second_deferral_waits_twice_as_long(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("451 4.3.0 try later", times=2)
    await worker.run_once()
    clock.advance(timedelta(seconds=60))
    await worker.run_once()
    [delivery] = await all_deliveries(sessionmaker)
    assert delivery.attempts == 2
    assert delivery.next_attempt_at == clock() + timedelta(seconds=120)


# Bounced


async def test_worker_permanent_failure_leaves_the_queue(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("550 5.1.1 no such user")
    await worker.run_once()
    assert [d.recipient for d in await waiting(sessionmaker)] == [SENDER]  # only the DSN


async def test_worker_permanent_failure_queues_a_dsn_to_the_sender(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("550 5.1.1 no such user")
    await worker.run_once()
    [bounce] = await dsn_messages(sessionmaker)
    assert bounce.mail_from == ""
    [delivery] = await waiting(sessionmaker)
    assert (delivery.message_id, delivery.mail_from, delivery.recipient) == (bounce.id, "", SENDER)


@pytest.mark.parametrize("authenticated", [True, None], ids=["proven", "unchecked"])
async def test_worker_dsn_goes_to_a_proven_or_unchecked_sender(
    worker: DeliveryWorker,
    sessionmaker: Sessionmaker,
    sink: Sink,
    clock: Clock,
    authenticated: bool | None,
) -> None:
    await queue_inbound(sessionmaker, clock, authenticated=authenticated)
    sink.refuse_rcpt("550 5.1.1 no such user")
    await worker.run_once()
    assert len(await dsn_messages(sessionmaker)) == 1


async def test_worker_no_dsn_to_an_unauthenticated_sender(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    # Neither SPF nor DKIM proved the sender: a DSN would be backscatter to whoever the
    # forger named. The failure is still in the activity log.
    await queue_inbound(sessionmaker, clock, authenticated=False)
    sink.refuse_rcpt("550 5.1.1 no such user")
    await worker.run_once()
    assert await dsn_messages(sessionmaker) == []
    assert await waiting(sessionmaker) == []
    async with sessionmaker() as session:
        statuses = list(await session.scalars(select(Activity.status)))
    assert statuses == [activity.BOUNCED]


async def test_worker_dsn_names_the_alias_and_hides_the_destination(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt(f"550 5.1.1 <{DESTINATION}>: no such user")
    await worker.run_once()
    [bounce] = await dsn_messages(sessionmaker)
    status = per_recipient_status(bounce.content)
    assert status["Final-Recipient"] == f"rfc822; {ALIAS}"
    assert status["Status"] == "5.1.1"
    assert status["Diagnostic-Code"] == f"smtp; 550 5.1.1 <{ALIAS}>: no such user"
    assert DESTINATION.encode() not in bounce.content


async def test_worker_dsn_is_sent_from_the_null_sender(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("550 5.1.1 no such user")
    await worker.run_once()
    clock.advance(timedelta(minutes=1))  # the outbox stamps the DSN with the real time
    assert await worker.run_once() == 1
    assert [(r.mail_from, r.rcpt_tos) for r in sink.received] == [("<>", [SENDER])]


async def test_worker_failed_dsn_gets_no_dsn(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("550 5.1.1 no such user", times=2)
    await worker.run_once()
    clock.advance(timedelta(minutes=1))
    await worker.run_once()  # the DSN, refused in turn
    assert await waiting(sessionmaker) == []
    assert [row.status for row in await activity_log(sessionmaker)] == ["bounced", "bounced"]


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(dsn_messages, id="dsn"),
        pytest.param(waiting, id="queue"),
        pytest.param(all_messages, id="message"),
    ],
)
async def test_worker_null_sender_bounced_leaves_nothing_behind(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock, rows: Rows
) -> None:
    # No DSN to the null sender (RFC 5321 4.5.5), so nothing is left of the message.
    await queue_inbound(sessionmaker, clock, sender="")
    sink.refuse_rcpt("550 5.1.1 no such user")
    await worker.run_once()
    assert await rows(sessionmaker) == []


async def test_worker_nonexistent_domain_bounces(sessionmaker: Sessionmaker, clock: Clock) -> None:
    worker = make_worker(sessionmaker, WorkerConfig(hostname=HOSTNAME), clock, FakeResolver())
    await queue_inbound(sessionmaker, clock)
    await worker.run_once()
    [row] = await activity_log(sessionmaker)
    assert row.status == "bounced"


async def expire_after_a_deferral(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    """Deferred once, then failing again when the 5 minutes of queue lifetime are over."""
    await queue_inbound(sessionmaker, clock, lifetime=timedelta(minutes=5))
    sink.refuse_rcpt("451 4.3.0 try later", times=2)
    await worker.run_once()
    clock.advance(timedelta(minutes=10))
    await worker.run_once()


async def test_worker_dsn_does_not_reveal_the_destination_domain(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    # dsn.py: "a bounce must not reveal where a disposable address leads"; the
    # destination's domain names the inbox's provider, or the owner for their own domain.
    worker = make_worker(sessionmaker, WorkerConfig(hostname=HOSTNAME), clock, FakeResolver())
    await queue_inbound(sessionmaker, clock, destinations=("me@private-owner.example",))
    await worker.run_once()
    [bounce] = await dsn_messages(sessionmaker)
    assert b"private-owner.example" not in bounce.content.lower()


async def test_worker_expired_temporary_failure_bounces(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await expire_after_a_deferral(worker, sessionmaker, sink, clock)
    assert [row.status for row in await activity_log(sessionmaker)] == ["deferred", "bounced"]
    assert [d.recipient for d in await waiting(sessionmaker)] == [SENDER]  # only the DSN


async def test_worker_expired_temporary_failure_reports_4_4_7(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await expire_after_a_deferral(worker, sessionmaker, sink, clock)
    [bounce] = await dsn_messages(sessionmaker)
    status = per_recipient_status(bounce.content)
    assert status["Status"] == "4.4.7"  # RFC 3463: delivery time expired
    assert status["Action"] == "failed"
    assert status["Diagnostic-Code"] == "smtp; 451 4.3.0 try later"


async def test_worker_run_delivers_when_woken(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    config = WorkerConfig(
        hostname=HOSTNAME, smarthost=Target("sink", sink.host, sink.port), poll_interval=60
    )
    worker = make_worker(sessionmaker, config, clock)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.2)  # the first, empty, round; now it waits to be woken
        await queue_inbound(sessionmaker, clock)
        worker.wake()
        received = await asyncio.to_thread(sink.wait_for, 1)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert [r.rcpt_tos for r in received] == [[DESTINATION]]


async def test_worker_run_goes_on_after_a_batch_cut_by_its_octets(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    # Batches of one message: each was short of batch_size, and the worker waited for the
    # 60 s poll before the next, though more were due.
    config = WorkerConfig(
        hostname=HOSTNAME,
        smarthost=Target("sink", sink.host, sink.port),
        poll_interval=60,
        batch_octets=1,
    )
    for _ in range(3):
        await queue_inbound(sessionmaker, clock)
    worker = make_worker(sessionmaker, config, clock)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        received = await asyncio.to_thread(sink.wait_for, 3)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert len(received) == 3


# Retry delays


def test_retry_delay_first_is_a_minute() -> None:
    assert retry_delay(1, 0.5) == 60.0


def test_retry_delay_doubles_each_attempt() -> None:
    assert [retry_delay(n, 0.5) for n in (1, 2, 3, 4)] == [60.0, 120.0, 240.0, 480.0]


def test_retry_delay_caps_at_an_hour() -> None:
    assert retry_delay(7, 0.5) == 3600.0
    assert retry_delay(50, 0.5) == 3600.0


def test_retry_delay_jitter_is_plus_or_minus_20_percent() -> None:
    assert retry_delay(50, 0.0) == pytest.approx(3600.0 * 0.8)
    assert retry_delay(50, 1.0) == pytest.approx(3600.0 * 1.2)
    assert retry_delay(1, 0.0) == pytest.approx(48.0)


# Claims


async def claim_due_deliveries(
    session: AsyncSession, worker: str, clock: Clock, *, limit: int
) -> list[Delivery]:
    """queue.claim_due in ``session``'s unit of work (the worker runs it in its own)."""
    batch = await session.run_sync(
        lambda sync: queue.claim_due(
            sync, worker, clock(), limit=limit, lease=LEASE, max_octets=UNLIMITED_OCTETS
        )
    )
    return batch.deliveries


async def claim_due(sessionmaker: Sessionmaker, worker: str, clock: Clock) -> list[int]:
    async with session_scope(sessionmaker) as session:
        claimed = await claim_due_deliveries(session, worker, clock, limit=100)
    return [d.id for d in claimed]


async def test_claim_due_takes_due_deliveries(sessionmaker: Sessionmaker, clock: Clock) -> None:
    ids = await queue_inbound(sessionmaker, clock)
    assert await claim_due(sessionmaker, "worker-a", clock) == ids
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.status, delivery.claimed_by) == ("delivering", "worker-a")
    assert delivery.claimed_until == clock() + LEASE


async def test_claim_due_skips_claimed_within_lease(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    await claim_due(sessionmaker, "worker-a", clock)
    clock.advance(LEASE - timedelta(seconds=1))
    assert await claim_due(sessionmaker, "worker-b", clock) == []


async def test_claim_due_retakes_claim_after_lease(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    ids = await queue_inbound(sessionmaker, clock)
    await claim_due(sessionmaker, "worker-a", clock)
    clock.advance(LEASE + timedelta(seconds=1))
    assert await claim_due(sessionmaker, "worker-b", clock) == ids
    [delivery] = await all_deliveries(sessionmaker)
    assert delivery.claimed_by == "worker-b"


async def test_claim_due_skips_deliveries_not_yet_due(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    clock.advance(timedelta(seconds=-1))
    assert await claim_due(sessionmaker, "worker-a", clock) == []


async def test_claim_due_respects_the_limit(sessionmaker: Sessionmaker, clock: Clock) -> None:
    await queue_inbound(sessionmaker, clock, destinations=("a@inbox.example", "b@inbox.example"))
    async with session_scope(sessionmaker) as session:
        claimed = await claim_due_deliveries(session, "worker-a", clock, limit=1)
    assert len(claimed) == 1


async def claim_batch(
    sessionmaker: Sessionmaker, clock: Clock, max_octets: int
) -> tuple[list[int], bool]:
    async with session_scope(sessionmaker) as session:
        batch = await session.run_sync(
            lambda sync: queue.claim_due(
                sync, "worker-a", clock(), limit=100, lease=LEASE, max_octets=max_octets
            )
        )
    return [d.id for d in batch.deliveries], batch.full


async def test_claim_due_batch_stops_at_its_octets(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    ids = [i for _ in range(3) for i in await queue_inbound(sessionmaker, clock)]
    size = len(CONTENT)
    assert await claim_batch(sessionmaker, clock, 2 * size) == (ids[:2], True)
    assert await claim_batch(sessionmaker, clock, 2 * size) == (ids[2:], False)


async def test_claim_due_batch_takes_one_message_over_its_octets(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    ids = [i for _ in range(2) for i in await queue_inbound(sessionmaker, clock)]
    assert await claim_batch(sessionmaker, clock, 1) == (ids[:1], True)


async def test_claim_due_batch_counts_a_message_once_for_all_its_deliveries(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    both = ("a@inbox.example", "b@inbox.example")
    ids = await queue_inbound(sessionmaker, clock, destinations=both)
    assert await claim_batch(sessionmaker, clock, len(CONTENT)) == (ids, False)


async def test_worker_delivers_a_claim_whose_lease_lapsed(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    await claim_due(sessionmaker, "crashed-worker", clock)
    assert await worker.run_once() == 0
    clock.advance(LEASE + timedelta(seconds=1))
    assert await worker.run_once() == 1
    assert len(sink.received) == 1


async def test_attempt_inline_leaves_a_delivery_the_queue_step_claimed(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    # In `serve` one worker does both: its queue step may claim a message between the
    # DATA commit and the in-session attempt. Sending it again would be a duplicate.
    ids = await queue_inbound(sessionmaker, clock)
    assert await claim_due(sessionmaker, worker.id, clock) == ids

    result = await worker.attempt_inline(ids, patience=5)

    assert not result.delivered and result.refusal_reply() is None
    assert sink.received == []
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.status, delivery.claimed_until) == ("delivering", clock() + LEASE)


async def test_release_claims_puts_claims_back(sessionmaker: Sessionmaker, clock: Clock) -> None:
    ids = await queue_inbound(sessionmaker, clock)
    await claim_due(sessionmaker, "worker-a", clock)
    async with session_scope(sessionmaker) as session:
        assert await queue.release_claims(session) == 1
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.status, delivery.claimed_by, delivery.claimed_until) == ("queued", None, None)
    assert await claim_due(sessionmaker, "worker-b", clock) == ids


async def test_release_claims_leaves_finished_deliveries(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_inbound(sessionmaker, clock)
    sink.refuse_rcpt("451 4.3.0 try later")
    await worker.run_once()  # deferred: queued, not claimed
    async with session_scope(sessionmaker) as session:
        assert await queue.release_claims(session) == 0


async def queue_outbox(sessionmaker: Sessionmaker, count: int) -> set[int]:
    recipients = [f"user{n}@inbox.example" for n in range(count)]
    async with session_scope(sessionmaker) as session:
        await outbox.enqueue_raw(
            session,
            CONTENT,
            kind="verification",
            mail_from=f"verify@{HOSTNAME}",
            recipients=recipients,
            message_id="<v@mx.mailroute.example>",
        )
    async with sessionmaker() as session:
        return set(await session.scalars(select(Delivery.id)))


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_claim_due_skips_rows_locked_by_another_claim(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    ids = await queue_outbox(sessionmaker, 4)
    clock.advance(timedelta(seconds=1))
    async with sessionmaker() as first, first.begin():
        mine = await claim_due_deliveries(first, "worker-a", clock, limit=2)
        async with sessionmaker() as second, second.begin():
            # Without SKIP LOCKED this would wait for the first transaction forever.
            theirs = await asyncio.wait_for(
                claim_due_deliveries(second, "worker-b", clock, limit=100), 10
            )
    assert len(mine) == 2
    assert {d.id for d in mine} | {d.id for d in theirs} == ids
    assert not {d.id for d in mine} & {d.id for d in theirs}


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_claim_due_concurrent_claims_are_disjoint(
    sessionmaker: Sessionmaker, clock: Clock
) -> None:
    ids = await queue_outbox(sessionmaker, 6)
    clock.advance(timedelta(seconds=1))

    async def claim(worker: str) -> set[int]:
        async with session_scope(sessionmaker) as session:
            claimed = await claim_due_deliveries(session, worker, clock, limit=3)
        return {d.id for d in claimed}

    first, second = await asyncio.wait_for(asyncio.gather(claim("worker-a"), claim("worker-b")), 10)
    assert not first & second
    assert first | second == ids


async def test_outbox_delivery_does_not_bounce(
    worker: DeliveryWorker, sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    await queue_outbox(sessionmaker, 1)
    clock.advance(timedelta(seconds=1))
    sink.refuse_rcpt("550 5.1.1 no such user")
    await worker.run_once()
    assert await dsn_messages(sessionmaker) == []
    assert await waiting(sessionmaker) == []
