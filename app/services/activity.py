"""The activity log: one row per message refused (or blocked), dropped, or per delivery
attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.db.models import Activity
from app.db.types import utcnow
from app.errors import InvalidDomain
from app.routing import normalize_domain

FORWARDED = "forwarded"
DROPPED = "dropped"
REJECTED = "rejected"
BLOCKED = "blocked"  # refused at RCPT: the sender is blocked (app.services.blocks)
DEFERRED = "deferred"
BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What we know of a message's arrival, shared by the rows that concern it."""

    client_ip: str | None
    mail_from: str | None
    message_id: str | None = None
    size: int | None = None
    message_ref: int | None = None
    # The inbound checks' verdicts (VERDICT_COLUMNS), as app.inbound_auth.checker gives
    # them; empty when the message was not checked.
    verdicts: dict[str, Any] = field(default_factory=dict)


# What the activity log (and each message) keeps of the inbound checks.
VERDICT_COLUMNS = ("spf", "dkim", "dmarc", "arc", "spam_score", "spam_action")


def record(session: AsyncSession | Session, columns: dict[str, Any]) -> None:
    """Add one row made by row(); it is written with the caller's unit of work."""
    session.add(Activity(**columns))


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write rows made by row() with one INSERT: no ORM unit of work per row."""
    if rows:
        session.execute(insert(cast(Table, Activity.__table__)), rows)


def row(
    envelope: Envelope,
    *,
    status: str,
    address: str | None,
    rule: str | None = None,
    action: str | None = None,
    destination: str | None = None,
    remote_host: str | None = None,
    reply: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """One row's columns, for record() or for many rows in one INSERT (the worker)."""
    return {
        "at": at or utcnow(),
        "message_ref": envelope.message_ref,
        "client_ip": envelope.client_ip,
        "mail_from": envelope.mail_from,
        "address": address,
        "domain": _domain_of(address),
        "rule": rule,
        "action": action,
        "destination": destination,
        "status": status,
        "remote_host": remote_host,
        "reply": reply,
        "message_id": envelope.message_id,
        "size": envelope.size,
        **{name: envelope.verdicts.get(name) for name in VERDICT_COLUMNS},
    }


def _domain_of(address: str | None) -> str | None:
    """The recipient's domain as the API filters on it: A-labels, lower case."""
    if not address:
        return None
    domain = address.rpartition("@")[2]
    try:
        return normalize_domain(domain)
    except InvalidDomain:
        return domain.lower()


async def prune(session: AsyncSession, retention: timedelta, now: datetime | None = None) -> int:
    """Delete activity older than ``retention``; the number of rows removed."""
    result = await session.execute(
        delete(Activity).where(Activity.at < (now or utcnow()) - retention)
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True)
class Filter:
    domain: str | None = None
    address: str | None = None
    status: str | None = None
    since: datetime | None = None
    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    arc: str | None = None
    spam_action: str | None = None


async def page(
    session: AsyncSession, where: Filter, *, limit: int, before: int | None = None
) -> list[Activity]:
    """Newest first; ``before`` (an id) continues from the previous page."""
    query = select(Activity).order_by(Activity.id.desc()).limit(limit)
    if where.domain:
        query = query.where(Activity.domain == where.domain)
    if where.address:
        query = query.where(func.lower(Activity.address) == where.address.lower())
    if where.status:
        query = query.where(Activity.status == where.status)
    if where.since:
        query = query.where(Activity.at >= where.since)
    for name in ("spf", "dkim", "dmarc", "arc", "spam_action"):
        wanted = getattr(where, name)
        if wanted:
            query = query.where(getattr(Activity, name) == wanted)
    if before is not None:
        query = query.where(Activity.id < before)
    return list(await session.scalars(query))
