"""Domains: the names whose mail we route."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Domain
from app.errors import DomainExists, DomainNotFound
from app.routing import normalize_domain, refuse_special_use
from app.services.integrity import flush_unique


async def create_domain(session: AsyncSession, name: str, *, subaddressing: bool = True) -> Domain:
    ascii_name = normalize_domain(name)
    # Here, not in normalize_domain: a domain added before this check can still be found
    # and deleted.
    refuse_special_use(ascii_name)
    exists = DomainExists(f"the domain {ascii_name} already exists")
    if await _find(session, ascii_name) is not None:
        raise exists
    domain = Domain(name=ascii_name, subaddressing=subaddressing)
    session.add(domain)
    await flush_unique(session, exists)
    return domain


async def list_domains(session: AsyncSession) -> list[Domain]:
    return list(await session.scalars(select(Domain).order_by(Domain.name)))


async def get_domain(session: AsyncSession, name: str) -> Domain:
    ascii_name = normalize_domain(name)
    domain = await _find(session, ascii_name)
    if domain is None:
        raise DomainNotFound(f"no domain named {ascii_name}")
    return domain


async def update_domain(
    session: AsyncSession, name: str, *, subaddressing: bool | None = None
) -> Domain:
    domain = await get_domain(session, name)
    if subaddressing is not None:
        domain.subaddressing = subaddressing
    await session.flush()
    return domain


async def delete_domain(session: AsyncSession, name: str) -> None:
    """Delete a domain and every rule on it; mail for it is then refused as a relay attempt."""
    domain = await get_domain(session, name)
    await session.delete(domain)
    await session.flush()


async def _find(session: AsyncSession, ascii_name: str) -> Domain | None:
    return await session.scalar(select(Domain).where(Domain.name == ascii_name))
