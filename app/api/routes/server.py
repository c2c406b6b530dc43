from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from app.api.deps import ContextDep, SessionDep
from app.api.schemas.domains import DnsRecordPublic
from app.services import dns_records

router = APIRouter(prefix="/server", tags=["server"])


@router.get("/dns", summary="The server's DNS records")
async def server_dns(session: SessionDep, context: ContextDep) -> list[DnsRecordPublic]:
    """The DKIM keys, SPF and address records of the server itself, each checked live."""
    keys = await context.signing_keys.published(session, datetime.now(UTC))
    await session.commit()  # release the database before waiting on DNS
    hostname = context.identity.hostname
    records = await dns_records.server_records(
        context.resolver,
        hostname,
        context.signing_domain or hostname,
        keys,
        context.signing_keys.grace,
    )
    return [DnsRecordPublic.model_validate(r, from_attributes=True) for r in records]
