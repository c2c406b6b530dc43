"""Fetching the rules that may decide an address (one indexed query), then deciding purely."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Executable, Row, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Block, Destination, Domain, Rule, RuleDestination
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
from app.routing.blocks import MAX_SENDER_KEYS, BlockView, sender_keys
from app.routing.decision import resolve_postmaster, resolve_srs_bounce
from app.routing.srs import Srs

POSTMASTER = "postmaster"


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


# The rules that may decide an address: one query on two unique indexes, domains(name)
# and rules(domain_id, local_part). The outer joins keep the domain row when no rule
# matches, so "not served" and "unknown address" stay apart. Plain columns, no ORM
# objects, and one statement object with parameters (SQLAlchemy compiles it once): this
# runs for every RCPT.
DOMAIN_VIEW = (
    select(
        Domain.name,
        Domain.subaddressing,
        Rule.id,
        Rule.kind,
        Rule.local_part,
        Rule.action,
        Rule.enabled,
        Rule.expires_at,
        Rule.max_messages,
        Rule.message_count,
        Destination.email,
        Destination.status,
    )
    .outerjoin(
        Rule,
        (Rule.domain_id == Domain.id)
        & Rule.local_part.in_([bindparam("key"), bindparam("base"), bindparam("catch_all")]),
    )
    .outerjoin(RuleDestination, RuleDestination.rule_id == Rule.id)
    .outerjoin(Destination, Destination.id == RuleDestination.destination_id)
    .where(Domain.name == bindparam("domain"))
)


def domain_view_parameters(address: Address) -> dict[str, Any]:
    # Three parameters, not an expanding list: SQLAlchemy renders a statement with an
    # expanding IN anew for each execution (one look-up per RCPT; bench/rcpt.py measures it).
    # lookup_keys gives the key, its base if it has one, and the catch-all.
    keys = lookup_keys(address)
    key, base, catch_all = keys if len(keys) == 3 else (keys[0], *keys)
    return {"domain": address.domain, "key": key, "base": base, "catch_all": catch_all}


def domain_view(rows: Sequence[Row[Any]]) -> DomainView | None:
    """The routing core's view of what DOMAIN_VIEW found."""
    if not rows:
        return None
    rules: dict[str, RuleView] = {}
    destinations: dict[str, list[DestinationView]] = {}
    for row in rows:
        if row.id is None:
            continue
        if row.local_part not in rules:
            rules[row.local_part] = RuleView(
                id=row.id,
                kind=RuleKind(row.kind),
                local_part=row.local_part,
                action=Action(row.action),
                enabled=row.enabled,
                expires_at=row.expires_at,
                max_messages=row.max_messages,
                message_count=row.message_count,
            )
        if row.email is not None:
            destinations.setdefault(row.local_part, []).append(
                DestinationView(row.email, row.status == "verified")
            )
    views = {
        key: dataclasses.replace(
            rule, destinations=tuple(sorted(destinations.get(key, ()), key=lambda d: d.email))
        )
        for key, rule in rules.items()
    }
    return DomainView(name=rows[0].name, subaddressing=rows[0].subaddressing, rules=views)


async def load_domain_view(session: AsyncSession, address: Address) -> DomainView | None:
    """The served domain of ``address`` with the rules that may match it, or None."""
    return domain_view(
        await SessionRows(session).rows(DOMAIN_VIEW, domain_view_parameters(address))
    )


# The blocks that may cover a sender on one domain: a second small query on
# ix_blocks_sender, made only for a served domain and a sender other than <>. Not folded
# into DOMAIN_VIEW: its rows are (rule x destination), and a join to the blocks would
# multiply them. A fixed number of parameters, as DOMAIN_VIEW has (no expanding IN).
SENDER_BLOCKS = (
    select(Block.id, Block.sender, Block.rule_id)
    .outerjoin(Domain, Domain.id == Block.domain_id)
    .where(
        Block.sender.in_([bindparam(f"sender{i}") for i in range(MAX_SENDER_KEYS)]),
        or_(Block.domain_id.is_(None), Domain.name == bindparam("domain")),
    )
)


def sender_blocks_parameters(domain: str, sender: str) -> dict[str, Any] | None:
    """SENDER_BLOCKS's parameters, the last key repeated to fill them; None for <>."""
    keys = sender_keys(sender)
    if not keys:
        return None
    padded = keys + (keys[-1],) * (MAX_SENDER_KEYS - len(keys))
    return {"domain": domain, **{f"sender{i}": key for i, key in enumerate(padded)}}


async def with_blocks(rows: Rows, domain: DomainView | None, sender: str) -> DomainView | None:
    """``domain`` with the blocks that may cover ``sender`` there."""
    parameters = sender_blocks_parameters(domain.name, sender) if domain else None
    if domain is None or parameters is None:
        return domain
    found = await rows.rows(SENDER_BLOCKS, parameters)
    blocks = tuple(BlockView(r.id, r.sender, r.rule_id) for r in found)
    return dataclasses.replace(domain, blocks=blocks) if blocks else domain


class Rows(Protocol):
    async def rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRows:
    session: AsyncSession

    async def rows(self, query: Executable, parameters: dict[str, Any]) -> Sequence[Row[Any]]:
        result: Sequence[Row[Any]] = (await self.session.execute(query, parameters)).all()
        return result


async def route(
    source: AsyncSession | Rows,
    raw_address: str,
    now: datetime | None = None,
    srs: Srs | None = None,
    *,
    sender: str = "",
    postmaster: str | None = None,
) -> tuple[Address, Decision]:
    """What happens to mail for ``raw_address`` from ``sender`` ("" for <>), with the rules
    read from ``source``: the request's session (the API), or an app.db.reader.Reader on
    the SMTP server's RCPT path.

    With ``srs`` (whose domain is our host name) the server's own addresses are routed
    too: its SRS bounce addresses, and its postmaster to ``postmaster``.
    """
    if srs is not None and raw_address.strip().lower() == POSTMASTER:
        # RFC 5321 4.5.1: "<Postmaster>" without a domain, any case.
        address = Address(POSTMASTER, srs.domain)
        return address, resolve_postmaster(address, postmaster)
    address = parse_address(raw_address)
    if srs is not None and address.domain == srs.domain:
        if srs.is_srs(address):
            return address, resolve_srs_bounce(address, srs, sender)
        if address.key == POSTMASTER:
            return address, resolve_postmaster(address, postmaster)
    if address.is_literal:
        return address, resolve_route(address, None, now or utcnow())
    rows = SessionRows(source) if isinstance(source, AsyncSession) else source
    domain = domain_view(await rows.rows(DOMAIN_VIEW, domain_view_parameters(address)))
    domain = await with_blocks(rows, domain, sender)
    return address, resolve_route(address, domain, now or utcnow(), sender)
