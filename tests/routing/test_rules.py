"""Whether a rule receives mail, and why not (app.routing.rules.rule_state)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.routing import Action, DestinationView, RuleKind, RuleState, RuleView, rule_state

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ME = DestinationView("me@inbox.example", verified=True)


def rule(**fields: object) -> RuleView:
    values: dict[str, object] = {"action": Action.FORWARD, "destinations": (ME,)} | fields
    return RuleView(id=1, kind=RuleKind.ALIAS, local_part="shop", **values)


def test_rule_state_is_active_for_enabled_forward_to_verified_destination() -> None:
    assert rule_state(rule(), NOW) == (RuleState.ACTIVE, None)


def test_rule_state_is_active_for_drop_without_destinations() -> None:
    assert rule_state(rule(action=Action.DROP, destinations=()), NOW) == (RuleState.ACTIVE, None)


def test_rule_state_is_disabled_when_not_enabled() -> None:
    assert rule_state(rule(enabled=False), NOW) == (RuleState.DISABLED, "the rule is disabled")


def test_rule_state_is_expired_at_the_expiry_instant() -> None:
    assert rule_state(rule(expires_at=NOW), NOW) == (
        RuleState.EXPIRED,
        "the rule expired at 2026-11-29T12:00:00+00:00",
    )


def test_rule_state_is_expired_after_expiry() -> None:
    state, _ = rule_state(rule(expires_at=NOW - timedelta(days=1)), NOW)
    assert state is RuleState.EXPIRED


def test_rule_state_is_active_before_expiry() -> None:
    assert rule_state(rule(expires_at=NOW + timedelta(microseconds=1)), NOW) == (
        RuleState.ACTIVE,
        None,
    )


def test_rule_state_is_limit_reached_at_max_messages() -> None:
    assert rule_state(rule(max_messages=5, message_count=5), NOW) == (
        RuleState.LIMIT_REACHED,
        "the rule has accepted its limit of 5 messages",
    )


def test_rule_state_is_limit_reached_beyond_max_messages() -> None:
    state, _ = rule_state(rule(max_messages=5, message_count=9), NOW)
    assert state is RuleState.LIMIT_REACHED


def test_rule_state_is_active_below_max_messages() -> None:
    assert rule_state(rule(max_messages=5, message_count=4), NOW) == (RuleState.ACTIVE, None)


def test_rule_state_is_no_destinations_for_forward_without_any() -> None:
    assert rule_state(rule(destinations=()), NOW) == (
        RuleState.NO_DESTINATIONS,
        "the rule forwards to no destination",
    )


def test_rule_state_is_unverified_when_any_destination_is_pending() -> None:
    destinations = (
        ME,
        DestinationView("zed@inbox.example", verified=False),
        DestinationView("amy@inbox.example", verified=False),
    )
    assert rule_state(rule(destinations=destinations), NOW) == (
        RuleState.UNVERIFIED_DESTINATIONS,
        "waiting for verification of amy@inbox.example, zed@inbox.example",
    )


def test_rule_state_reports_disabled_before_expired() -> None:
    state, _ = rule_state(rule(enabled=False, expires_at=NOW), NOW)
    assert state is RuleState.DISABLED


def test_rule_state_reports_expired_before_limit_reached() -> None:
    state, _ = rule_state(rule(expires_at=NOW, max_messages=1, message_count=1), NOW)
    assert state is RuleState.EXPIRED


def test_rule_state_reports_limit_reached_before_destination_problems() -> None:
    state, _ = rule_state(rule(max_messages=1, message_count=1, destinations=()), NOW)
    assert state is RuleState.LIMIT_REACHED
