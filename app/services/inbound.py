"""Storing an accepted message: once, whatever its number of recipients, with one delivery per
destination, in the caller's unit of work (the SMTP server commits before it answers 250).

store() takes a synchronous Session and a batch, and has no async twin: the SMTP server's
group commit runs it (app.db.group_commit), on SQLite in one go in the database's thread;
an async caller runs it with ``await session.run_sync(lambda sync: store(sync, ...))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from app.db import content
from app.db.models import Delivery
from app.routing import CATCH_ALL_KEY, Decision, MatchKind, Outcome
from app.routing.srs import Srs
from app.services import activity, rule_use

# Why a recipient accepted at RCPT got nothing: its rule changed before the message came.
GONE_SINCE_RCPT = "the rule was disabled, expired or reached its message limit after RCPT"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A recipient accepted at RCPT time, with the decision that accepted it."""

    address: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class Arrival:
    queue_id: str
    client_ip: str | None
    helo: str | None
    mail_from: str  # "" is the null sender
    # Our Received: line (and the inbound checks' fields), then exactly what the client sent.
    content: bytes | bytearray
    message_id: str | None
    verdicts: dict[str, Any] = field(default_factory=dict)  # activity.VERDICT_COLUMNS
    authenticated: bool | None = None  # the sender proven (app.inbound_auth.policy)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message to store: what arrived, and the recipients accepted for it."""

    arrival: Arrival
    recipients: list[Accepted]


@dataclass(slots=True)
class Stored:
    message_id: int | None = None  # the row; None when every recipient dropped the mail
    delivery_ids: list[int] = field(default_factory=list)
    dropped: int = 0
    # Recipients whose rule was disabled, expired or used up between RCPT and storing.
    refused: int = 0

    @property
    def refused_by_all(self) -> bool:
        """Nothing was taken for any recipient: the message must be refused, not 250."""
        return self.message_id is None and self.dropped == 0 and self.refused > 0


def rule_label(decision: Decision, domain: str) -> str | None:
    """How the activity log names the rule that decided, e.g. ``shop@example.org``."""
    if decision.matched_by is MatchKind.SRS:
        return "srs"
    if decision.rule is None:
        return None
    local = "*" if decision.rule.local_part == CATCH_ALL_KEY else decision.rule.local_part
    return f"{local}@{domain}"


def store(
    session: Session,
    incoming: Sequence[Incoming],
    *,
    srs: Srs,
    queue_lifetime: timedelta,
    now: datetime,
) -> list[Stored]:
    """Store each of ``incoming`` for its forwarding recipients in the caller's unit of
    work, with a few statements in all whatever their number: core inserts, no ORM
    objects. Log the drops; count rule use (recipients whose rule can no longer take a
    message get nothing: Stored.refused)."""
    results = [Stored() for _ in incoming]
    kept = _routed(session, incoming, results, srs, now)
    if not kept:
        return results
    arrivals = [incoming[index].arrival for index, _ in kept]
    message_ids = content.insert_messages(
        session, [_message_row(a, now) for a in arrivals], [a.content for a in arrivals]
    )
    rows: list[dict[str, Any]] = []
    owners: list[int] = []
    for (index, targets), message_id in zip(kept, message_ids, strict=True):
        results[index].message_id = message_id
        for target in targets.values():
            rows.append(_delivery_row(message_id, target, now + queue_lifetime, now))
            owners.append(index)
    for index, delivery_id in zip(owners, session.scalars(_INSERT_DELIVERIES, rows), strict=True):
        results[index].delivery_ids.append(delivery_id)
    return results


# Where a message goes, keyed by the destination folded: (recipient, destination, sender).
Targets = dict[str, tuple[Accepted, str, str]]


def _routed(
    session: Session, incoming: Sequence[Incoming], results: list[Stored], srs: Srs, now: datetime
) -> list[tuple[int, Targets]]:
    """Count each message against its recipients' rules, then where it goes: (its index,
    its targets) for each that goes anywhere. Refusals and drops are logged, and counted
    in ``results``."""
    wanted = [{a.decision.rule.id for a in item.recipients if a.decision.rule} for item in incoming]
    taken = rule_use.reserve(session, wanted, now)
    kept: list[tuple[int, Targets]] = []
    for index, item in enumerate(incoming):
        recipients = _still_receiving(session, item, taken[index], results[index], now)
        targets = _targets(session, Incoming(item.arrival, recipients), results[index], srs, now)
        if targets:
            kept.append((index, targets))
    return kept


_deliveries = cast(Table, Delivery.__table__)
_INSERT_DELIVERIES = insert(_deliveries).returning(_deliveries.c.id, sort_by_parameter_order=True)


def _message_row(arrival: Arrival, now: datetime) -> dict[str, Any]:
    """The row of ``arrival``, but for its content (app.db.content stores that)."""
    return {
        "kind": "inbound",
        "queue_id": arrival.queue_id,
        "created_at": now,
        "client_ip": arrival.client_ip,
        "helo": arrival.helo,
        "mail_from": arrival.mail_from,
        "message_id": arrival.message_id,
        "size": len(arrival.content),
        **{name: arrival.verdicts.get(name) for name in activity.VERDICT_COLUMNS},
        "sender_authenticated": arrival.authenticated,
    }


def _delivery_row(
    message_id: int, target: tuple[Accepted, str, str], expires_at: datetime, now: datetime
) -> dict[str, Any]:
    """The queued delivery of message ``message_id`` to one target (Targets)."""
    accepted, destination, sender = target
    domain = accepted.address.rpartition("@")[2].lower()
    return {
        "message_id": message_id,
        "rule_id": accepted.decision.rule.id if accepted.decision.rule else None,
        "rule": rule_label(accepted.decision, domain),
        "original_rcpt": accepted.address,
        "recipient": destination,
        "mail_from": sender,
        "status": "queued",
        "attempts": 0,
        "next_attempt_at": now,
        "expires_at": expires_at,
        "created_at": now,
        "updated_at": now,
    }


def _still_receiving(
    session: Session, item: Incoming, taken: set[int], stored: Stored, now: datetime
) -> list[Accepted]:
    """The recipients whose rule counted the message (rule_use.reserve), and SRS ones;
    the others are logged as rejected and counted in ``stored``."""
    arrival = item.arrival
    kept: list[Accepted] = []
    for accepted in item.recipients:
        rule = accepted.decision.rule
        if rule is None or rule.id in taken:
            kept.append(accepted)
            continue
        stored.refused += 1
        envelope = _envelope(arrival)
        activity.record(
            session,
            activity.row(
                envelope,
                status=activity.REJECTED,
                address=accepted.address,
                rule=rule_label(accepted.decision, accepted.address.rpartition("@")[2].lower()),
                reply=GONE_SINCE_RCPT,
                at=now,
            ),
        )
    return kept


def _targets(session: Session, item: Incoming, stored: Stored, srs: Srs, now: datetime) -> Targets:
    """Where ``item`` goes: one delivery per destination, however many recipients lead
    there (as Postfix removes duplicates after alias expansion), keyed by the destination
    folded: (recipient, destination, sender). Drops are logged and counted in ``stored``."""
    arrival = item.arrival
    envelope = _envelope(arrival)
    targets: Targets = {}
    for accepted in item.recipients:
        decision = accepted.decision
        if decision.outcome is Outcome.DROP:
            stored.dropped += 1
            activity.record(
                session,
                activity.row(
                    envelope,
                    status=activity.DROPPED,
                    address=accepted.address,
                    rule=rule_label(decision, accepted.address.rpartition("@")[2].lower()),
                    action="drop",
                    at=now,
                ),
            )
            continue
        # A bounce to an SRS address goes back with the sender it came with (usually <>);
        # forwarded mail leaves with an SRS sender so SPF checks our host.
        sender = (
            arrival.mail_from
            if decision.matched_by is MatchKind.SRS
            else srs.forward(arrival.mail_from)
        )
        for destination in decision.destinations:
            targets.setdefault(destination.lower(), (accepted, destination, sender))
    return targets


def _envelope(arrival: Arrival) -> activity.Envelope:
    return activity.Envelope(
        arrival.client_ip,
        arrival.mail_from,
        arrival.message_id,
        len(arrival.content),
        verdicts=arrival.verdicts,
    )
