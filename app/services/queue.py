"""The outbound queue: claiming due deliveries, recording what each attempt came to.

Several workers may share one PostgreSQL: a claim is ``SELECT ... FOR UPDATE SKIP LOCKED``
then a lease (``claimed_until``); a worker that dies loses its claims when the lease runs
out. SQLite has one writer at a time (every transaction begins IMMEDIATE), and one worker
process, which takes back every claim when it starts.

Claims, outcomes and dropping finished messages run inside the worker's transactions
(app.db.transactions), in one go on a synchronous Session: those functions take a
``Session`` and have no async twin; an async caller runs them in its unit of work with
``await session.run_sync(lambda sync: claim(sync, ...))``. The rest take an AsyncSession.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload

from app.db import content
from app.db.models import Delivery, Message
from app.errors import NotFound, QueueItemBusy, QueueItemNotFound

QUEUED = "queued"
DELIVERING = "delivering"
DELIVERED = "delivered"
FAILED = "failed"
WAITING = (QUEUED, DELIVERING)
# Listing the queue needs each message's queue id, not its (possibly 25 MiB) content.
_queue_id_only = selectinload(Delivery.message).load_only(Message.queue_id)


@dataclass(frozen=True, slots=True)
class Batch:
    deliveries: list[Delivery]
    full: bool  # cut by the limit or the octets: more may be due now


def claim_due(
    session: Session,
    worker: str,
    now: datetime,
    *,
    limit: int,
    lease: timedelta,
    max_octets: int,
) -> Batch:
    """Claim up to ``limit`` deliveries that are due, or whose claim has lapsed, and whose
    messages come to at most ``max_octets`` (the first always), with their messages loaded."""
    due = or_(
        (Delivery.status == QUEUED) & (Delivery.next_attempt_at <= now),
        (Delivery.status == DELIVERING) & (Delivery.claimed_until < now),
    )
    rows = session.execute(
        select(Delivery.id, Delivery.message_id, Message.size)
        .join(Message, Message.id == Delivery.message_id)
        .where(due)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Delivery)
    ).all()
    ids: list[int] = []
    loaded: set[int] = set()  # each message's content is loaded once, however many go
    octets = 0
    for delivery_id, message_id, size in rows:
        more = 0 if message_id in loaded else size
        if ids and octets + more > max_octets:
            break
        octets += more
        loaded.add(message_id)
        ids.append(delivery_id)
    claimed = claim(session, ids, worker, now, now + lease)
    return Batch(claimed, full=len(ids) < len(rows) or len(rows) == limit)


def claim(
    session: Session, ids: Sequence[int], worker: str, now: datetime, until: datetime
) -> list[Delivery]:
    """Claim those of the given deliveries that wait and that no live claim holds, with
    their messages loaded.

    A live claim is never taken over, not even one by the same ``worker`` (in ``serve``
    the queue step and the in-session attempt share an id): whoever holds it sends.
    """
    if not ids:
        return []
    free = (Delivery.status == QUEUED) | (Delivery.claimed_until < now)
    # RETURNING names the rows this statement claimed, not older claims by ``worker``.
    claimed = list(
        session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.status.in_(WAITING), free)
            .values(status=DELIVERING, claimed_by=worker, claimed_until=until)
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not claimed:
        return []
    rows = session.scalars(
        select(Delivery)
        .where(Delivery.id.in_(claimed))
        .order_by(Delivery.id)
        .options(content.with_messages(session))
        .execution_options(populate_existing=True)
    )
    deliveries = list(rows)
    content.load(session, {d.message.id: d.message for d in deliveries}.values())
    return deliveries


async def release_claims(session: AsyncSession, holder_prefix: str | None = None) -> int:
    """Put claimed deliveries back in the queue: every one (a lone worker starting up),
    or those whose holder's id starts with ``holder_prefix`` (a process that died)."""
    held = Delivery.status == DELIVERING
    if holder_prefix is not None:
        held &= Delivery.claimed_by.startswith(holder_prefix, autoescape=True)
    result = await session.execute(
        update(Delivery).where(held).values(status=QUEUED, claimed_by=None, claimed_until=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


_deliveries = cast(Table, Delivery.__table__)
# What an attempt changes in a delivery (finish, defer), for many rows in one statement.
_SAVE_OUTCOME = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("delivery_id"))
    .values(
        status=bindparam("new_status"),
        attempts=bindparam("new_attempts"),
        last_remote=bindparam("new_remote"),
        last_reply=bindparam("new_reply"),
        next_attempt_at=bindparam("new_next_attempt_at"),
        claimed_by=None,
        claimed_until=None,
        updated_at=bindparam("new_updated_at"),
    )
)


def save_outcomes(session: Session, deliveries: Sequence[Delivery]) -> None:
    """Write what finish() and defer() set on these (detached) deliveries, with one
    UPDATE for all: the worker records a whole batch at once."""
    if not deliveries:
        return
    session.execute(
        _SAVE_OUTCOME,
        [
            {
                "delivery_id": d.id,
                "new_status": d.status,
                "new_attempts": d.attempts,
                "new_remote": d.last_remote,
                "new_reply": d.last_reply,
                "new_next_attempt_at": d.next_attempt_at,
                "new_updated_at": d.updated_at,
            }
            for d in deliveries
        ],
    )


def finish(
    delivery: Delivery, status: str, *, remote: str | None, reply: str, now: datetime
) -> None:
    delivery.status = status
    delivery.attempts += 1
    delivery.last_remote = remote
    delivery.last_reply = reply[:2000]
    delivery.claimed_by = None
    delivery.claimed_until = None
    delivery.updated_at = now


def defer(
    delivery: Delivery, *, remote: str | None, reply: str, retry_at: datetime, now: datetime
) -> None:
    finish(delivery, QUEUED, remote=remote, reply=reply, now=now)
    delivery.next_attempt_at = retry_at


def drop_finished_messages(session: Session, message_ids: set[int]) -> None:
    """Delete messages none of whose deliveries still wait: their content served its use
    (their deliveries go with them; the activity log keeps the history)."""
    session.flush()  # the statuses just set must be in the database for the check
    if not message_ids:
        return
    waiting = exists().where(Delivery.message_id == Message.id, Delivery.status.in_(WAITING))
    session.execute(
        delete(Message)
        .where(Message.id.in_(message_ids), ~waiting)
        .execution_options(synchronize_session=False)
    )


async def list_waiting(session: AsyncSession, limit: int = 1000) -> list[Delivery]:
    """Deliveries not yet done, soonest first."""
    return list(
        await session.scalars(
            select(Delivery)
            .where(Delivery.status.in_(WAITING))
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
            .options(_queue_id_only)
        )
    )


async def get_waiting(session: AsyncSession, delivery_id: int) -> Delivery:
    delivery = await session.scalar(
        select(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(WAITING))
        .options(_queue_id_only)
    )
    if delivery is None:
        raise QueueItemNotFound(f"no delivery {delivery_id} waits in the queue")
    return delivery


async def retry_now(session: AsyncSession, delivery_id: int, now: datetime) -> Delivery:
    """Make a deferred delivery due at once (one being sent now is left alone: 409)."""
    delivery = _idle(await get_waiting(session, delivery_id), now)
    delivery.next_attempt_at = now
    await session.flush()
    return delivery


async def remove(session: AsyncSession, delivery_id: int, now: datetime) -> None:
    """Give up a waiting delivery without a bounce (the operator's decision)."""
    delivery = _idle(await get_waiting(session, delivery_id), now)
    message_id = delivery.message_id
    await session.delete(delivery)
    await session.run_sync(lambda sync: drop_finished_messages(sync, {message_id}))


def _idle(delivery: Delivery, now: datetime) -> Delivery:
    """The delivery, unless a worker holds a live claim on it (409: it is being sent)."""
    if delivery.status == DELIVERING and (delivery.claimed_until or now) > now:
        raise QueueItemBusy(f"delivery {delivery.id} is being attempted right now")
    return delivery


async def get_message(session: AsyncSession, message_id: int) -> Message:
    message = await session.get(Message, message_id)
    if message is None:
        raise NotFound(f"no stored message with id {message_id}")
    await session.run_sync(lambda sync: content.load(sync, [message]))
    return message
