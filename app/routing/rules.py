"""Rules as the routing core sees them: plain, immutable views, no database objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from app.routing.blocks import BlockView

# The catch-all is stored as the rule with an empty local part: no real address has one.
CATCH_ALL_KEY = ""


class Action(StrEnum):
    FORWARD = "forward"
    DROP = "drop"


class RuleKind(StrEnum):
    ALIAS = "alias"
    CATCH_ALL = "catch_all"


class RuleState(StrEnum):
    """Whether a rule receives mail, and if not, why."""

    ACTIVE = "active"
    DISABLED = "disabled"
    EXPIRED = "expired"
    LIMIT_REACHED = "limit_reached"
    NO_DESTINATIONS = "no_destinations"
    UNVERIFIED_DESTINATIONS = "unverified_destinations"


@dataclass(frozen=True, slots=True)
class DestinationView:
    email: str
    verified: bool


@dataclass(frozen=True, slots=True)
class RuleView:
    id: int
    kind: RuleKind
    local_part: str
    action: Action
    enabled: bool = True
    expires_at: datetime | None = None
    max_messages: int | None = None
    message_count: int = 0
    destinations: tuple[DestinationView, ...] = ()


@dataclass(frozen=True, slots=True)
class DomainView:
    """A served domain and those of its rules that may match one address, by lookup key;
    and the blocks that may cover the message's sender."""

    name: str
    subaddressing: bool
    rules: Mapping[str, RuleView] = field(default_factory=dict)
    blocks: tuple[BlockView, ...] = ()


def rule_state(rule: RuleView, now: datetime) -> tuple[RuleState, str | None]:
    """Whether ``rule`` receives mail at ``now``; when not, a sentence saying why."""
    if not rule.enabled:
        return RuleState.DISABLED, "the rule is disabled"
    if rule.expires_at is not None and rule.expires_at <= now:
        return RuleState.EXPIRED, f"the rule expired at {rule.expires_at.isoformat()}"
    if rule.max_messages is not None and rule.message_count >= rule.max_messages:
        return (
            RuleState.LIMIT_REACHED,
            f"the rule has accepted its limit of {rule.max_messages} messages",
        )
    if rule.action is Action.FORWARD:
        if not rule.destinations:
            return RuleState.NO_DESTINATIONS, "the rule forwards to no destination"
        pending = [d.email for d in rule.destinations if not d.verified]
        if pending:
            return (
                RuleState.UNVERIFIED_DESTINATIONS,
                "waiting for verification of " + ", ".join(sorted(pending)),
            )
    return RuleState.ACTIVE, None
