from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response

from app.api.deps import ContextDep, SessionDep
from app.api.schemas.domains import DnsRecordPublic, DomainCreate, DomainPublic, DomainUpdate
from app.services import dns_records, domains

router = APIRouter(prefix="/domains", tags=["domains"])


@router.post("", status_code=201, summary="Add a domain")
async def create_domain(body: DomainCreate, session: SessionDep) -> DomainPublic:
    """Add a domain whose mail this server will route; publish its DNS records next."""
    domain = await domains.create_domain(session, body.name, subaddressing=body.subaddressing)
    return DomainPublic.model_validate(domain, from_attributes=True)


@router.get("", summary="List domains")
async def list_domains(session: SessionDep) -> list[DomainPublic]:
    """Every domain served here, by name."""
    return [
        DomainPublic.model_validate(d, from_attributes=True)
        for d in await domains.list_domains(session)
    ]


@router.get("/{name}", summary="Show a domain")
async def get_domain(name: str, session: SessionDep) -> DomainPublic:
    """One domain, by its Unicode or ASCII name."""
    return DomainPublic.model_validate(
        await domains.get_domain(session, name), from_attributes=True
    )


@router.patch("/{name}", summary="Change a domain")
async def update_domain(name: str, body: DomainUpdate, session: SessionDep) -> DomainPublic:
    """Turn subaddressing (local+tag) on or off."""
    domain = await domains.update_domain(session, name, subaddressing=body.subaddressing)
    return DomainPublic.model_validate(domain, from_attributes=True)


@router.delete("/{name}", status_code=204, summary="Remove a domain")
async def delete_domain(name: str, session: SessionDep) -> Response:
    """Remove the domain and all its aliases; its mail is refused from then on."""
    await domains.delete_domain(session, name)
    return Response(status_code=204)


@router.get("/{name}/dns", summary="DNS records to publish")
async def domain_dns(name: str, session: SessionDep, context: ContextDep) -> list[DnsRecordPublic]:
    """The MX, SPF and DMARC records to publish, and our DKIM keys', each checked live."""
    domain = await domains.get_domain(session, name)
    keys = await context.signing_keys.published(session, datetime.now(UTC))
    await session.commit()  # release the database before waiting on DNS
    hostname = context.identity.hostname
    records = await dns_records.required_records(context.resolver, domain.name, hostname)
    # Receivers look up the key of our signature and seal on what we forward from it.
    records += await dns_records.dkim_records(
        context.resolver, context.signing_domain or hostname, keys, context.signing_keys.grace
    )
    return [DnsRecordPublic.model_validate(r, from_attributes=True) for r in records]
