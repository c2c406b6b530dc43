"""Aliases (custom and disposable addresses) and each domain's catch-all: the rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql import Select

from app.db.models import Destination, Domain, Rule
from app.db.types import utcnow
from app.errors import AliasExists, AliasNotFound, InvalidRule, UnknownDestination
from app.routing import CATCH_ALL_KEY, Action, RuleKind, normalize_local_part
from app.routing.disposable import generate_local_part
from app.services.destinations import find_destinations, normalize_email
from app.services.domains import get_domain
from app.services.integrity import flush_unique

MAX_DESTINATIONS = 10
DISPOSABLE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class AliasPage:
    items: list[Rule]
    total: int


async def create_alias(
    session: AsyncSession,
    domain_name: str,
    *,
    local_part: str | None = None,
    action: Action = Action.FORWARD,
    destinations: list[str] | None = None,
    enabled: bool = True,
    expires_at: datetime | None = None,
    max_messages: int | None = None,
    note: str | None = None,
) -> Rule:
    """Create a custom alias, or a disposable one when ``local_part`` is None."""
    domain = await get_domain(session, domain_name)
    chosen = await _resolve_destinations(session, action, destinations or [])
    expires_at = _check_expiry(expires_at)
    if local_part is None:
        key = await _free_disposable_key(session, domain)
    else:
        key = normalize_local_part(local_part, domain.name)
        if await _find(session, domain, key) is not None:
            raise AliasExists(f"{key}@{domain.name} already exists")
    rule = Rule(
        domain_id=domain.id,
        kind=RuleKind.ALIAS,
        local_part=key,
        disposable=local_part is None,
        action=action,
        enabled=enabled,
        expires_at=expires_at,
        max_messages=max_messages,
        note=note,
        destinations=chosen,
    )
    session.add(rule)
    await flush_unique(session, AliasExists(f"{key}@{domain.name} already exists"))
    return rule


async def list_aliases(
    session: AsyncSession,
    domain_name: str,
    *,
    enabled: bool | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AliasPage:
    domain = await get_domain(session, domain_name)
    query: Select[Any] = select(Rule).where(
        Rule.domain_id == domain.id, Rule.kind == RuleKind.ALIAS
    )
    if enabled is not None:
        query = query.where(Rule.enabled == enabled)
    if q:
        pattern = (
            "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        query = query.where(
            or_(
                Rule.local_part.like(pattern, escape="\\"),
                func.lower(Rule.note).like(pattern, escape="\\"),
            )
        )
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.options(selectinload(Rule.destinations))
        .order_by(Rule.local_part)
        .limit(limit)
        .offset(offset)
    )
    return AliasPage(items=list(rows), total=total or 0)


async def get_alias(session: AsyncSession, domain_name: str, local_part: str) -> Rule:
    domain = await get_domain(session, domain_name)
    key = normalize_local_part(local_part, domain.name)
    rule = await _find(session, domain, key)
    if rule is None or rule.kind != RuleKind.ALIAS:
        raise AliasNotFound(f"no alias {key}@{domain.name}")
    return rule


async def update_alias(
    session: AsyncSession, domain_name: str, local_part: str, changes: dict[str, Any]
) -> Rule:
    """Apply ``changes`` (only the fields given; ``None`` clears the optional ones)."""
    rule = await get_alias(session, domain_name, local_part)
    action = Action(changes.get("action", rule.action))
    if "destinations" in changes or "action" in changes:
        emails = changes.get("destinations")
        if emails is None:
            emails = [] if action is Action.DROP else [d.email for d in rule.destinations]
        rule.destinations = await _resolve_destinations(session, action, emails)
        rule.action = action
    if "expires_at" in changes:
        rule.expires_at = _check_expiry(changes["expires_at"])
    for field in ("enabled", "max_messages", "note"):
        if field in changes:
            setattr(rule, field, changes[field])
    await session.flush()
    return rule


async def delete_alias(session: AsyncSession, domain_name: str, local_part: str) -> None:
    rule = await get_alias(session, domain_name, local_part)
    await session.delete(rule)
    await session.flush()


async def get_catch_all(session: AsyncSession, domain_name: str) -> Rule | None:
    domain = await get_domain(session, domain_name)
    return await _find(session, domain, CATCH_ALL_KEY)


async def put_catch_all(
    session: AsyncSession,
    domain_name: str,
    *,
    enabled: bool,
    action: Action,
    destinations: list[str],
) -> Rule:
    domain = await get_domain(session, domain_name)
    chosen = await _resolve_destinations(session, action, destinations)
    rule = await _find(session, domain, CATCH_ALL_KEY)
    if rule is None:
        rule = Rule(domain_id=domain.id, kind=RuleKind.CATCH_ALL, local_part=CATCH_ALL_KEY)
        session.add(rule)
    rule.enabled = enabled
    rule.action = action
    rule.destinations = chosen
    await flush_unique(session, AliasExists(f"the catch-all of {domain.name} changed meanwhile"))
    return rule


async def _find(session: AsyncSession, domain: Domain, key: str) -> Rule | None:
    return await session.scalar(
        select(Rule)
        .where(Rule.domain_id == domain.id, Rule.local_part == key)
        .options(selectinload(Rule.destinations))
    )


async def _free_disposable_key(session: AsyncSession, domain: Domain) -> str:
    for _ in range(DISPOSABLE_ATTEMPTS):
        key = generate_local_part()
        if await _find(session, domain, key) is None:
            return key
    raise AliasExists("could not find a free disposable address; try again")  # ~2^-74 odds


async def _resolve_destinations(
    session: AsyncSession, action: Action, emails: list[str]
) -> list[Destination]:
    if action is Action.DROP:
        if emails:
            raise InvalidRule("a drop rule has no destinations")
        return []
    if not emails:
        raise InvalidRule("a forward rule needs at least one destination")
    normalized = list(dict.fromkeys(normalize_email(e).lower() for e in emails))
    if len(normalized) > MAX_DESTINATIONS:
        raise InvalidRule(f"a rule forwards to at most {MAX_DESTINATIONS} destinations")
    found = await find_destinations(session, normalized)
    missing = [e for e in normalized if e not in found]
    if missing:
        raise UnknownDestination(
            "not a destination yet (add it with POST /v1/destinations): " + ", ".join(missing)
        )
    return [found[e] for e in normalized]


def _check_expiry(expires_at: datetime | None) -> datetime | None:
    """A future expiry, in UTC (as it reads back from the database)."""
    if expires_at is None:
        return None
    if expires_at <= utcnow():
        raise InvalidRule("expires_at must be in the future; to stop an alias, disable it")
    return expires_at.astimezone(UTC)
