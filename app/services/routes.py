"""Fetching the rules that may decide an address (one indexed query), then deciding purely."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Destination, Domain, Rule, RuleDestination
from app.db.types import utcnow
from app.routing import (
    Action,
    Address,
    Decision,
    DestinationView,
    DomainView,
    RuleKind,
    RuleView,
    lookup_keys,
    parse_address,
    resolve_route,
)
from app.routing.decision import resolve_srs_bounce
from app.routing.srs import Srs


def destination_views(destinations: Iterable[Destination]) -> tuple[DestinationView, ...]:
    return tuple(DestinationView(d.email, d.status == "verified") for d in destinations)


def rule_view(rule: Rule, destinations: Iterable[DestinationView]) -> RuleView:
    """The routing core's view of a database rule."""
    return RuleView(
        id=rule.id,
        kind=RuleKind(rule.kind),
        local_part=rule.local_part,
        action=Action(rule.action),
        enabled=rule.enabled,
        expires_at=rule.expires_at,
        max_messages=rule.max_messages,
        message_count=rule.message_count,
        destinations=tuple(destinations),
    )


async def load_domain_view(session: AsyncSession, address: Address) -> DomainView | None:
    """The served domain of ``address`` with the rules that may match it, or None.

    One query on two unique indexes: domains(name), rules(domain_id, local_part); the
    outer joins keep the domain row when no rule matches, so "not served" and "unknown
    address" stay apart.
    """
    query = (
        select(
            Domain.name,
            Domain.subaddressing,
            Rule,
            Destination.email,
            Destination.status,
        )
        .outerjoin(Rule, (Rule.domain_id == Domain.id) & Rule.local_part.in_(lookup_keys(address)))
        .outerjoin(RuleDestination, RuleDestination.rule_id == Rule.id)
        .outerjoin(Destination, Destination.id == RuleDestination.destination_id)
        .where(Domain.name == address.domain)
    )
    rows = (await session.execute(query)).all()
    if not rows:
        return None
    rules: dict[str, Rule] = {}
    destinations: dict[str, list[DestinationView]] = {}
    for _name, _sub, rule, email, status in rows:
        if rule is None:
            continue
        rules[rule.local_part] = rule
        if email is not None:
            destinations.setdefault(rule.local_part, []).append(
                DestinationView(email, status == "verified")
            )
    views = {
        key: rule_view(rule, sorted(destinations.get(key, ()), key=lambda d: d.email))
        for key, rule in rules.items()
    }
    return DomainView(name=rows[0][0], subaddressing=rows[0][1], rules=views)


async def route(
    session: AsyncSession, raw_address: str, now: datetime | None = None, srs: Srs | None = None
) -> tuple[Address, Decision]:
    """What happens to mail for ``raw_address``: the call both the API and SMTP make."""
    address = parse_address(raw_address)
    if srs is not None and srs.is_srs(address):
        return address, resolve_srs_bounce(address, srs)
    if address.is_literal:
        return address, resolve_route(address, None, now or utcnow())
    domain = await load_domain_view(session, address)
    return address, resolve_route(address, domain, now or utcnow())
