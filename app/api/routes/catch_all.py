from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import SessionDep
from app.api.routes.rule_status import shown_rule
from app.api.schemas.aliases import CatchAllPublic, CatchAllPut
from app.routing import Action, normalize_domain
from app.services import aliases

router = APIRouter(prefix="/domains/{domain}/catch-all", tags=["catch-all"])


@router.get("", summary="Show the catch-all")
async def get_catch_all(domain: str, session: SessionDep) -> CatchAllPublic:
    """What happens to mail for addresses no alias covers (refused unless enabled)."""
    rule = await aliases.get_catch_all(session, domain)
    name = normalize_domain(domain)
    if rule is None:
        return CatchAllPublic(
            domain=name,
            enabled=False,
            action="forward",
            destinations=[],
            active=False,
            status="disabled",
            reason="no catch-all is set",
        )
    return CatchAllPublic.model_validate(shown_rule(rule, name), from_attributes=True)


@router.put("", summary="Set the catch-all")
async def put_catch_all(domain: str, body: CatchAllPut, session: SessionDep) -> CatchAllPublic:
    """Forward or drop mail for every address on the domain that no alias covers."""
    rule = await aliases.put_catch_all(
        session,
        domain,
        enabled=body.enabled,
        action=Action(body.action),
        destinations=body.destinations,
    )
    return CatchAllPublic.model_validate(
        shown_rule(rule, normalize_domain(domain)), from_attributes=True
    )
