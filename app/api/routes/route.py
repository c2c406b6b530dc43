from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SessionDep
from app.api.schemas.route import MatchedRule, RoutePublic
from app.routing import CATCH_ALL_KEY, RuleKind
from app.services import routes

router = APIRouter(tags=["routing"])


@router.get("/route", summary="Explain how an address is routed")
async def explain_route(
    address: Annotated[
        str, Query(min_length=1, max_length=512, examples=["shop+news@example.org"])
    ],
    session: SessionDep,
) -> RoutePublic:
    """What would happen to mail for ``address``: the same decision the SMTP server makes."""
    parsed, decision = await routes.route(session, address)
    rule = None
    if decision.rule is not None:
        local = "*" if decision.rule.local_part == CATCH_ALL_KEY else decision.rule.local_part
        rule = MatchedRule(
            type="catch_all" if decision.rule.kind is RuleKind.CATCH_ALL else "alias",
            address=f"{local}@{parsed.domain}",
            status=decision.rule_state.value if decision.rule_state else "active",
        )
    return RoutePublic(
        address=str(parsed),
        outcome=decision.outcome.value,
        matched_by=decision.matched_by.value if decision.matched_by else None,
        rule=rule,
        destinations=list(decision.destinations),
        refusal=decision.refusal.value if decision.refusal else None,
        explanation=decision.explanation,
    )
