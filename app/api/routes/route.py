from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ContextDep, SessionDep
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
    context: ContextDep,
    sender: Annotated[
        str,
        Query(
            max_length=512,
            description="The envelope sender (MAIL FROM); empty for the null sender <>, "
            "as bounces have. Only the server's SRS bounce addresses depend on it.",
        ),
    ] = "",
) -> RoutePublic:
    """What would happen to mail for ``address``: the same decision the SMTP server makes."""
    parsed, decision = await routes.route(
        session, address, srs=context.srs, sender=sender, postmaster=context.postmaster
    )
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
        matched_by=decision.matched_by,
        rule=rule,
        destinations=list(decision.destinations),
        refusal=decision.refusal,
        explanation=decision.explanation,
    )
