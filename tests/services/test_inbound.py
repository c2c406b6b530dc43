"""store (app.services.inbound): several accepted messages stored in one unit of work,
each as it would be alone: its row, its deliveries, its drops and its rule counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Activity, Delivery, Destination, Message, Rule
from app.routing import Action
from app.routing.srs import Srs
from app.services import aliases, destinations, domains, inbound
from app.services.inbound import Accepted, Arrival, Incoming, Stored
from app.services.routes import route
from tests.conftest import HOSTNAME

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LIFETIME = timedelta(days=5)
SENDER = "alice@sender.example"
ME = "me@inbox.example"
# Another destination row, the same inbox folded: the API refuses to make it, so the test
# writes it directly, as a database from before that check could hold it.
ME_CAPITAL = "Me@inbox.example"
WORK = "work@inbox.example"


@pytest.fixture
def srs() -> Srs:
    return Srs("store-all-srs-secret-0123456789", HOSTNAME)


@pytest.fixture
async def rule_ids(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """example.org: shop to ME and WORK, mine to ME_CAPITAL, spam and junk dropped."""
    async with session_scope(sessionmaker) as session:
        domain = await domains.create_domain(session, "example.org")
        for email in (ME, WORK):
            await destinations.add_verified_destination(session, email)
        rules = [
            await aliases.create_alias(
                session, "example.org", local_part="shop", destinations=[ME, WORK]
            ),
            await aliases.create_alias(
                session, "example.org", local_part="spam", action=Action.DROP
            ),
            await aliases.create_alias(
                session, "example.org", local_part="junk", action=Action.DROP
            ),
        ]
        capital = Destination(email=ME_CAPITAL, status="verified", verified_at=NOW)
        rules.append(Rule(domain_id=domain.id, local_part="mine", destinations=[capital]))
        session.add(rules[-1])
        await session.flush()
        return {rule.local_part: rule.id for rule in rules}


async def incoming(session: AsyncSession, content: bytes, *recipients: str) -> Incoming:
    """A message from SENDER to ``recipients``, accepted as the RCPT look-up decides."""
    accepted = [Accepted(r, (await route(session, r, NOW))[1]) for r in recipients]
    arrival = Arrival(
        queue_id=f"q{abs(hash(content)) % 10**8}",
        client_ip="192.0.2.7",
        helo="client.example",
        mail_from=SENDER,
        content=content,
        message_id=None,
    )
    return Incoming(arrival, accepted)


async def store(session: AsyncSession, srs: Srs, *items: Incoming) -> list[Stored]:
    stored = await session.run_sync(
        lambda sync: inbound.store(sync, items, srs=srs, queue_lifetime=LIFETIME, now=NOW)
    )
    await session.commit()
    return stored


async def deliveries_of(session: AsyncSession, message_id: int | None) -> list[Delivery]:
    query = select(Delivery).where(Delivery.message_id == message_id).order_by(Delivery.id)
    return list(await session.scalars(query))


async def test_store_stores_each_message_byte_exact(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    contents = [
        b"Subject: one\r\n\r\nplain\r\n",
        b"Subject: two\r\n\r\n\xff\xfe 8-bit \x00 and a NUL\r\n.\r\n",
        b"Subject: three\r\n\r\n" + bytes(range(256)) + b"\r\n",
    ]
    items = [await incoming(session, c, "shop@example.org") for c in contents]

    stored = await store(session, srs, *items)

    rows = {m.id: m for m in await session.scalars(select(Message))}
    assert len(rows) == 3
    for item, result in zip(items, stored, strict=True):
        assert result.message_id is not None
        row = rows[result.message_id]
        assert (row.content, row.size, row.queue_id, row.mail_from) == (
            item.arrival.content,
            len(item.arrival.content),
            item.arrival.queue_id,
            SENDER,
        )


async def test_store_makes_one_delivery_per_destination_folded(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    first = await incoming(session, b"1\r\n", "shop@example.org", "mine@example.org")
    second = await incoming(session, b"2\r\n", "mine@example.org", "SHOP@example.org")
    third = await incoming(session, b"3\r\n", "mine@example.org")

    stored = await store(session, srs, first, second, third)

    recipients = [[d.recipient for d in await deliveries_of(session, s.message_id)] for s in stored]
    # ME_CAPITAL is ME folded: the first recipient leading there wins.
    assert recipients == [[ME, WORK], [ME_CAPITAL, WORK], [ME_CAPITAL]]


async def test_store_returns_each_message_its_delivery_ids_in_order(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    items = [
        await incoming(session, b"1\r\n", "shop@example.org"),
        await incoming(session, b"2\r\n", "mine@example.org"),
        await incoming(session, b"3\r\n", "shop@example.org", "mine@example.org"),
    ]

    stored = await store(session, srs, *items)

    assert [len(s.delivery_ids) for s in stored] == [2, 1, 2]
    for result in stored:
        rows = await deliveries_of(session, result.message_id)
        assert result.delivery_ids == [d.id for d in rows]
    assert len({i for s in stored for i in s.delivery_ids}) == 5


async def test_store_writes_deliveries_as_queued_with_srs_sender(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    (stored,) = await store(session, srs, await incoming(session, b"1\r\n", "Shop+x@example.org"))

    [delivery, _] = await deliveries_of(session, stored.message_id)
    assert (
        delivery.status,
        delivery.original_rcpt,
        delivery.rule_id,
        delivery.rule,
        delivery.mail_from,
        delivery.attempts,
    ) == (
        "queued",
        "Shop+x@example.org",
        rule_ids["shop"],
        "shop@example.org",
        srs.forward(SENDER),
        0,
    )
    assert delivery.mail_from != SENDER
    assert delivery.expires_at.replace(tzinfo=UTC) == NOW + LIFETIME


async def test_store_counts_each_message_once_per_rule(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    srs: Srs,
    rule_ids: dict[str, int],
) -> None:
    await store(
        session,
        srs,
        await incoming(session, b"1\r\n", "shop@example.org", "shop+a@example.org"),
        await incoming(session, b"2\r\n", "shop@example.org", "spam@example.org"),
        await incoming(session, b"3\r\n", "spam@example.org", "junk@example.org"),
        await incoming(session, b"4\r\n", "mine@example.org"),
    )

    async with sessionmaker() as reading:
        counts = dict((await reading.execute(select(Rule.local_part, Rule.message_count))).all())
    assert counts == {"shop": 2, "mine": 1, "spam": 2, "junk": 1}


async def test_store_logs_and_counts_drops(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    stored = await store(
        session,
        srs,
        await incoming(session, b"1\r\n", "shop@example.org", "spam@example.org"),
        await incoming(session, b"2\r\n", "spam@example.org", "junk@example.org"),
    )

    assert [s.dropped for s in stored] == [1, 2]
    rows = (await session.scalars(select(Activity).order_by(Activity.id))).all()
    assert [(a.status, a.address, a.rule, a.action) for a in rows] == [
        ("dropped", "spam@example.org", "spam@example.org", "drop"),
        ("dropped", "spam@example.org", "spam@example.org", "drop"),
        ("dropped", "junk@example.org", "junk@example.org", "drop"),
    ]
    assert {(a.mail_from, a.client_ip) for a in rows} == {(SENDER, "192.0.2.7")}


async def test_store_keeps_no_row_of_an_all_dropped_message(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    kept_first = await incoming(session, b"kept 1\r\n", "shop@example.org")
    dropped = await incoming(session, b"dropped\r\n", "spam@example.org")
    kept_last = await incoming(session, b"kept 3\r\n", "mine@example.org")

    stored = await store(session, srs, kept_first, dropped, kept_last)

    assert (stored[1].message_id, stored[1].delivery_ids, stored[1].dropped) == (None, [], 1)
    contents = {m.id: m.content for m in await session.scalars(select(Message))}
    assert contents == {
        stored[0].message_id: b"kept 1\r\n",
        stored[2].message_id: b"kept 3\r\n",
    }
    last = await deliveries_of(session, stored[2].message_id)
    assert [d.recipient for d in last] == [ME_CAPITAL]


async def test_store_of_only_drops_writes_no_message(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    stored = await store(session, srs, await incoming(session, b"x\r\n", "junk@example.org"))

    assert stored == [Stored(message_id=None, delivery_ids=[], dropped=1)]
    assert (await session.scalars(select(Message.id))).all() == []
    assert (await session.scalars(select(Delivery.id))).all() == []


async def test_store_batch_gives_a_limited_rule_only_its_room(
    session: AsyncSession, srs: Srs, rule_ids: dict[str, int]
) -> None:
    # Three messages in one batch to shop@, which has room for two more: the first two
    # take it, the third gets nothing (app.services.rule_use), and says so.
    await session.execute(
        update(Rule).where(Rule.id == rule_ids["shop"]).values(max_messages=3, message_count=1)
    )
    await session.commit()
    items = [await incoming(session, f"{n}\r\n".encode(), "shop@example.org") for n in range(3)]

    stored = await store(session, srs, *items)

    assert [(s.message_id is not None, s.refused, s.refused_by_all) for s in stored] == [
        (True, 0, False),
        (True, 0, False),
        (False, 1, True),
    ]
    count = await session.scalar(select(Rule.message_count).where(Rule.id == rule_ids["shop"]))
    assert count == 3
    rows = (await session.scalars(select(Activity))).all()
    assert [(a.status, a.address) for a in rows] == [("rejected", "shop@example.org")]
