"""The status fields aliases and catch-alls share, computed by the routing core."""

from __future__ import annotations

from typing import Any

from app.db.models import Rule
from app.db.types import utcnow
from app.routing import RuleState, rule_state
from app.services.routes import destination_views, rule_view


def status_fields(rule: Rule) -> dict[str, Any]:
    state, reason = rule_state(rule_view(rule, destination_views(rule.destinations)), utcnow())
    return {"active": state is RuleState.ACTIVE, "status": state.value, "reason": reason}
