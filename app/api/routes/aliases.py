from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import SessionDep
from app.api.routes.rule_status import shown_rule
from app.api.schemas.aliases import AliasCreate, AliasPage, AliasPublic, AliasUpdate
from app.api.schemas.base import Line
from app.routing import Action, normalize_domain
from app.services import aliases

router = APIRouter(prefix="/domains/{domain}/aliases", tags=["aliases"])


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
    return AliasPublic.model_validate(
        shown_rule(rule, normalize_domain(domain)), from_attributes=True
    )


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
    name = normalize_domain(domain)
    return AliasPage(
        items=[
            AliasPublic.model_validate(shown_rule(r, name), from_attributes=True)
            for r in page.items
        ],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/{local_part:path}", summary="Show an alias")
async def get_alias(domain: str, local_part: str, session: SessionDep) -> AliasPublic:
    """One alias with its status: whether it receives mail now, and if not, why."""
    rule = await aliases.get_alias(session, domain, local_part)
    return AliasPublic.model_validate(
        shown_rule(rule, normalize_domain(domain)), from_attributes=True
    )


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
    return AliasPublic.model_validate(
        shown_rule(rule, normalize_domain(domain)), from_attributes=True
    )


@router.delete("/{local_part:path}", status_code=204, summary="Delete an alias")
async def delete_alias(domain: str, local_part: str, session: SessionDep) -> Response:
    """Delete the alias; its address is refused from then on (or caught by the catch-all)."""
    await aliases.delete_alias(session, domain, local_part)
    return Response(status_code=204)
