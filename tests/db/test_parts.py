"""Large message content in parts on PostgreSQL (app.db.parts): stored in slices of
PART_OCTETS with an empty content in the message row, read back whole and byte-exact by
the worker's claim and by `queue show`, gone with the message; on SQLite never used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import parts
from app.db.models import Message, MessagePart
from app.routing.srs import Srs
from app.services import inbound, queue
from app.services.inbound import Stored
from tests.conftest import HOSTNAME
from tests.db.arrivals import arrival

NOW = datetime(2030, 1, 1, tzinfo=UTC)
# Three and a half parts of every octet value, CR and LF alone included.
LARGE = bytearray(bytes(range(256)) * (parts.PART_OCTETS * 7 // 2 // 256))
SMALL = b"Subject: small\r\n\r\nbody\r\n"


async def store(session: AsyncSession, *contents: bytes | bytearray) -> list[Stored]:
    srs = Srs("parts-test-secret-0123456789abcdef", HOSTNAME)
    items = [arrival(content) for content in contents]
    stored = await session.run_sync(
        lambda sync: inbound.store(sync, items, srs=srs, queue_lifetime=timedelta(days=1), now=NOW)
    )
    await session.commit()
    return stored


async def part_count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(MessagePart)) or 0)


async def test_parts_hold_large_content_on_postgresql_only(session: AsyncSession) -> None:
    [large, small] = await store(session, LARGE, SMALL)
    rows = {m.id: (m.size, m.content) for m in await session.scalars(select(Message))}
    postgresql = session.bind.dialect.name == "postgresql"
    assert rows[small.message_id] == (len(SMALL), SMALL)
    assert rows[large.message_id] == (len(LARGE), b"" if postgresql else bytes(LARGE))
    assert await part_count(session) == (4 if postgresql else 0)


async def test_parts_read_back_whole_by_the_claim(session: AsyncSession) -> None:
    stored = await store(session, SMALL, LARGE, SMALL)
    ids = [i for s in stored for i in s.delivery_ids]
    until = NOW + timedelta(minutes=1)
    claimed = await session.run_sync(lambda sync: queue.claim(sync, ids, "w", NOW, until))
    assert [bytes(d.message.content) for d in claimed] == [SMALL, bytes(LARGE), SMALL]


async def test_parts_read_back_whole_by_queue_show(session: AsyncSession) -> None:
    [large] = await store(session, LARGE)
    assert large.message_id is not None
    session.expunge_all()
    message = await queue.get_message(session, large.message_id)
    assert bytes(message.content) == bytes(LARGE)


async def test_parts_go_with_their_message(session: AsyncSession) -> None:
    [large] = await store(session, LARGE)
    await session.execute(delete(Message).where(Message.id == large.message_id))
    await session.commit()
    assert await part_count(session) == 0
