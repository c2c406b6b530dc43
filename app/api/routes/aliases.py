from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import SessionDep
from app.api.routes.rule_status import status_fields
from app.api.schemas.aliases import AliasCreate, AliasPage, AliasPublic, AliasUpdate
from app.api.schemas.base import Line
from app.db.models import Rule
from app.routing import Action, normalize_domain
from app.services import aliases

router = APIRouter(prefix="/domains/{domain}/aliases", tags=["aliases"])


def alias_public(rule: Rule, domain: str) -> AliasPublic:
    return AliasPublic(
        address=f"{rule.local_part}@{domain}",
        local_part=rule.local_part,
        domain=domain,
        disposable=rule.disposable,
        action=rule.action,
        destinations=sorted(d.email for d in rule.destinations),
        enabled=rule.enabled,
        expires_at=rule.expires_at,
        max_messages=rule.max_messages,
        message_count=rule.message_count,
        note=rule.note,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        **status_fields(rule),
    )


@router.post("", status_code=201, summary="Create an alias")
async def create_alias(domain: str, body: AliasCreate, session: SessionDep) -> AliasPublic:
    """Create a custom alias, or a disposable one (generated, unguessable) without local_part."""
    rule = await aliases.create_alias(
        session,
        domain,
        local_part=body.local_part,
        action=Action(body.action),
        destinations=body.destinations,
        enabled=body.enabled,
        expires_at=body.expires_at,
        max_messages=body.max_messages,
        note=body.note,
    )
    return alias_public(rule, normalize_domain(domain))


@router.get("", summary="List aliases")
async def list_aliases(
    domain: str,
    session: SessionDep,
    enabled: bool | None = None,
    q: Annotated[Line | None, Query(max_length=200, description="Part of address or note")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> AliasPage:
    """A page of the domain's aliases, by local part."""
    page = await aliases.list_aliases(
        session, domain, enabled=enabled, q=q, limit=limit, offset=offset
    )
    return AliasPage(
        items=[alias_public(r, normalize_domain(domain)) for r in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/{local_part:path}", summary="Show an alias")
async def get_alias(domain: str, local_part: str, session: SessionDep) -> AliasPublic:
    """One alias with its status: whether it receives mail now, and if not, why."""
    rule = await aliases.get_alias(session, domain, local_part)
    return alias_public(rule, normalize_domain(domain))


@router.patch("/{local_part:path}", summary="Change an alias")
async def update_alias(
    domain: str, local_part: str, body: AliasUpdate, session: SessionDep
) -> AliasPublic:
    """Change only the fields sent; null clears expires_at, max_messages or note."""
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    for field in ("action", "enabled", "destinations"):
        if field in changes and changes[field] is None:
            del changes[field]  # null means "leave as is" for fields that cannot be empty
    rule = await aliases.update_alias(session, domain, local_part, changes)
    return alias_public(rule, normalize_domain(domain))


@router.delete("/{local_part:path}", status_code=204, summary="Delete an alias")
async def delete_alias(domain: str, local_part: str, session: SessionDep) -> Response:
    """Delete the alias; its address is refused from then on (or caught by the catch-all)."""
    await aliases.delete_alias(session, domain, local_part)
    return Response(status_code=204)
