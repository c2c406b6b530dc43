from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response

from app.api.deps import ContextDep, SessionDep
from app.api.schemas.domains import DnsRecordPublic, DomainCreate, DomainPublic, DomainUpdate
from app.db.models import Domain
from app.routing.address import unicode_domain
from app.services import dns_records, domains

router = APIRouter(prefix="/domains", tags=["domains"])


def domain_public(domain: Domain) -> DomainPublic:
    return DomainPublic(
        name=domain.name,
        unicode_name=unicode_domain(domain.name),
        subaddressing=domain.subaddressing,
        created_at=domain.created_at,
    )


@router.post("", status_code=201, summary="Add a domain")
async def create_domain(body: DomainCreate, session: SessionDep) -> DomainPublic:
    """Add a domain whose mail this server will route; publish its DNS records next."""
    domain = await domains.create_domain(session, body.name, subaddressing=body.subaddressing)
    return domain_public(domain)


@router.get("", summary="List domains")
async def list_domains(session: SessionDep) -> list[DomainPublic]:
    """Every domain served here, by name."""
    return [domain_public(d) for d in await domains.list_domains(session)]


@router.get("/{name}", summary="Show a domain")
async def get_domain(name: str, session: SessionDep) -> DomainPublic:
    """One domain, by its Unicode or ASCII name."""
    return domain_public(await domains.get_domain(session, name))


@router.patch("/{name}", summary="Change a domain")
async def update_domain(name: str, body: DomainUpdate, session: SessionDep) -> DomainPublic:
    """Turn subaddressing (local+tag) on or off."""
    domain = await domains.update_domain(session, name, subaddressing=body.subaddressing)
    return domain_public(domain)


@router.delete("/{name}", status_code=204, summary="Remove a domain")
async def delete_domain(name: str, session: SessionDep) -> Response:
    """Remove the domain and all its aliases; its mail is refused from then on."""
    await domains.delete_domain(session, name)
    return Response(status_code=204)


@router.get("/{name}/dns", summary="DNS records to publish")
async def domain_dns(name: str, session: SessionDep, context: ContextDep) -> list[DnsRecordPublic]:
    """The MX, SPF and DMARC records the owner publishes, each checked live in DNS."""
    domain = await domains.get_domain(session, name)
    await session.commit()  # release the database before waiting on DNS
    records = await dns_records.required_records(
        context.resolver, domain.name, context.identity.hostname
    )
    return [DnsRecordPublic(**asdict(r)) for r in records]
