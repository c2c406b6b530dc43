from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ContextDep, SessionDep
from app.api.schemas.base import Overlay
from app.api.schemas.route import RoutePublic
from app.routing import CATCH_ALL_KEY, RuleState
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
            "as bounces have. Blocked senders and the server's SRS bounce addresses "
            "depend on it.",
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
        rule = Overlay(
            decision.rule,
            address=f"{local}@{parsed.domain}",
            status=(decision.rule_state or RuleState.ACTIVE).value,
        )
    return RoutePublic.model_validate(
        Overlay(decision, address=str(parsed), rule=rule), from_attributes=True
    )
