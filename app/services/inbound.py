"""Storing an accepted message: once, whatever its number of recipients, with one delivery per
destination, in the caller's unit of work (the SMTP server commits before it answers 250)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Delivery, Message, Rule
from app.routing import CATCH_ALL_KEY, Decision, MatchKind, Outcome
from app.routing.srs import Srs
from app.services import activity


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
    content: bytes  # our Received: line, then exactly what the client sent
    message_id: str | None


@dataclass(slots=True)
class Stored:
    message: Message | None = None  # None when every recipient dropped the mail
    deliveries: list[Delivery] = field(default_factory=list)
    dropped: int = 0


def rule_label(decision: Decision, domain: str) -> str | None:
    """How the activity log names the rule that decided, e.g. ``shop@example.org``."""
    if decision.matched_by is MatchKind.SRS:
        return "srs"
    if decision.rule is None:
        return None
    local = "*" if decision.rule.local_part == CATCH_ALL_KEY else decision.rule.local_part
    return f"{local}@{domain}"


async def store(
    session: AsyncSession,
    arrival: Arrival,
    recipients: list[Accepted],
    *,
    srs: Srs,
    queue_lifetime: timedelta,
    now: datetime,
) -> Stored:
    """Store ``arrival`` for its forwarding recipients; log the drops; count rule use."""
    envelope = activity.Envelope(
        arrival.client_ip, arrival.mail_from, arrival.message_id, len(arrival.content)
    )
    stored = Stored()
    # One delivery per destination, however many recipients lead there (as Postfix
    # removes duplicates after alias expansion): key -> (recipient, destination, sender).
    targets: dict[str, tuple[Accepted, str, str]] = {}
    for accepted in recipients:
        decision = accepted.decision
        domain = accepted.address.rpartition("@")[2].lower()
        if decision.outcome is Outcome.DROP:
            stored.dropped += 1
            activity.record(
                session,
                envelope,
                status=activity.DROPPED,
                address=accepted.address,
                rule=rule_label(decision, domain),
                action="drop",
                at=now,
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
    await _count_rule_use(session, recipients)
    if not targets:
        return stored
    stored.message = Message(
        kind="inbound",
        queue_id=arrival.queue_id,
        created_at=now,
        client_ip=arrival.client_ip,
        helo=arrival.helo,
        mail_from=arrival.mail_from,
        message_id=arrival.message_id,
        size=len(arrival.content),
        content=arrival.content,
    )
    session.add(stored.message)
    await session.flush()
    for accepted, destination, sender in targets.values():
        delivery = Delivery(
            message_id=stored.message.id,
            rule_id=accepted.decision.rule.id if accepted.decision.rule else None,
            rule=rule_label(accepted.decision, accepted.address.rpartition("@")[2].lower()),
            original_rcpt=accepted.address,
            recipient=destination,
            mail_from=sender,
            next_attempt_at=now,
            expires_at=now + queue_lifetime,
            created_at=now,
        )
        session.add(delivery)
        stored.deliveries.append(delivery)
    await session.flush()
    return stored


async def _count_rule_use(session: AsyncSession, recipients: list[Accepted]) -> None:
    """One more accepted message for each rule that accepted it (max_messages counts these)."""
    rule_ids = {a.decision.rule.id for a in recipients if a.decision.rule is not None}
    if rule_ids:
        await session.execute(
            update(Rule)
            .where(Rule.id.in_(rule_ids))
            .values(message_count=Rule.message_count + 1)
            .execution_options(synchronize_session=False)
        )
