"""What aliases and catch-alls show beyond their row: the domain, and the state now."""

from __future__ import annotations

from app.api.schemas.base import Overlay
from app.db.models import Rule
from app.db.types import utcnow
from app.routing import RuleState, rule_state
from app.services.routes import destination_views, rule_view


def shown_rule(rule: Rule, domain: str) -> Overlay:
    """The rule as ``AliasPublic`` and ``CatchAllPublic`` read it: with its domain's name,
    its address there, and its state now, computed by the routing core."""
    state, reason = rule_state(rule_view(rule, destination_views(rule.destinations)), utcnow())
    return Overlay(
        rule,
        domain=domain,
        address=f"{rule.local_part}@{domain}",
        active=state is RuleState.ACTIVE,
        status=state.value,
        reason=reason,
    )
