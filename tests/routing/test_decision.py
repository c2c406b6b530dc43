"""The routing decision (app.routing.decision): pure, so views are built by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.routing import (
    CATCH_ALL_KEY,
    Action,
    Address,
    Decision,
    DestinationView,
    DomainView,
    MatchKind,
    Outcome,
    Refusal,
    RuleKind,
    RuleState,
    RuleView,
    lookup_keys,
    parse_address,
    resolve_route,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
OURS = "ours.example"
ME = DestinationView("me@inbox.example", verified=True)
WORK = DestinationView("work@inbox.example", verified=True)
NEW = DestinationView("new@inbox.example", verified=False)
_ids = itertools.count(1)


def alias(local_part: str, **fields: object) -> RuleView:
    values: dict[str, object] = {"action": Action.FORWARD, "destinations": (ME,)} | fields
    return RuleView(id=next(_ids), kind=RuleKind.ALIAS, local_part=local_part, **values)


def catch_all(**fields: object) -> RuleView:
    values: dict[str, object] = {"action": Action.FORWARD, "destinations": (WORK,)} | fields
    return RuleView(id=0, kind=RuleKind.CATCH_ALL, local_part=CATCH_ALL_KEY, **values)


def served(*rules: RuleView, subaddressing: bool = True) -> DomainView:
    return DomainView(OURS, subaddressing, {rule.local_part: rule for rule in rules})


def decide(raw: str, domain: DomainView | None) -> Decision:
    return resolve_route(parse_address(raw), domain, NOW)


# --- precedence ------------------------------------------------------------------------


def test_resolve_route_forwards_to_exact_alias() -> None:
    shop = alias("shop")
    assert decide("shop@ours.example", served(shop, catch_all())) == Decision(
        Outcome.FORWARD,
        "mail for shop@ours.example is forwarded to me@inbox.example",
        rule=shop,
        matched_by=MatchKind.EXACT,
        destinations=("me@inbox.example",),
        rule_state=RuleState.ACTIVE,
    )


def test_resolve_route_matches_local_part_case_insensitively() -> None:
    shop = alias("shop")
    decision = decide("SHOP@Ours.Example", served(shop))
    assert (decision.rule, decision.matched_by) == (shop, MatchKind.EXACT)


def test_resolve_route_prefers_exact_alias_over_subaddress() -> None:
    tagged = alias("shop+news", destinations=(WORK,))
    decision = decide("shop+news@ours.example", served(alias("shop"), tagged))
    assert (decision.rule, decision.matched_by) == (tagged, MatchKind.EXACT)


def test_resolve_route_forwards_subaddress_to_base_alias() -> None:
    shop = alias("shop")
    assert decide("shop+news@ours.example", served(shop, catch_all())) == Decision(
        Outcome.FORWARD,
        "mail for shop+news@ours.example is forwarded to me@inbox.example",
        rule=shop,
        matched_by=MatchKind.SUBADDRESS,
        destinations=("me@inbox.example",),
        rule_state=RuleState.ACTIVE,
    )


def test_resolve_route_splits_subaddress_at_first_plus() -> None:
    shop = alias("shop")
    decision = decide("shop+a+b@ours.example", served(shop))
    assert (decision.rule, decision.matched_by) == (shop, MatchKind.SUBADDRESS)


def test_resolve_route_ignores_tag_without_subaddressing() -> None:
    everything = catch_all()
    decision = decide(
        "shop+news@ours.example", served(alias("shop"), everything, subaddressing=False)
    )
    assert (decision.rule, decision.matched_by) == (everything, MatchKind.CATCH_ALL)


def test_resolve_route_refuses_tag_without_subaddressing_or_catch_all() -> None:
    decision = decide("shop+news@ours.example", served(alias("shop"), subaddressing=False))
    assert decision == Decision(
        Outcome.REFUSE,
        "no rule covers shop+news@ours.example",
        refusal=Refusal.UNKNOWN_ADDRESS,
    )


def test_resolve_route_forwards_unknown_local_part_to_catch_all() -> None:
    everything = catch_all()
    assert decide("anything@ours.example", served(alias("shop"), everything)) == Decision(
        Outcome.FORWARD,
        "mail for anything@ours.example is forwarded to work@inbox.example",
        rule=everything,
        matched_by=MatchKind.CATCH_ALL,
        destinations=("work@inbox.example",),
        rule_state=RuleState.ACTIVE,
    )


def test_resolve_route_prefers_subaddress_over_catch_all() -> None:
    shop = alias("shop")
    decision = decide("shop+news@ours.example", served(shop, catch_all()))
    assert decision.matched_by is MatchKind.SUBADDRESS


def test_resolve_route_refuses_unknown_address_without_catch_all() -> None:
    assert decide("nobody@ours.example", served(alias("shop"))) == Decision(
        Outcome.REFUSE, "no rule covers nobody@ours.example", refusal=Refusal.UNKNOWN_ADDRESS
    )


def test_resolve_route_treats_disabled_catch_all_as_unknown_address() -> None:
    assert decide("nobody@ours.example", served(catch_all(enabled=False))) == Decision(
        Outcome.REFUSE, "no rule covers nobody@ours.example", refusal=Refusal.UNKNOWN_ADDRESS
    )


def test_resolve_route_does_not_treat_empty_base_as_subaddress() -> None:
    everything = catch_all()
    decision = decide("+x@ours.example", served(everything))
    assert (decision.rule, decision.matched_by) == (everything, MatchKind.CATCH_ALL)


def test_resolve_route_refuses_empty_base_under_disabled_catch_all_as_unknown() -> None:
    decision = decide("+x@ours.example", served(catch_all(enabled=False)))
    assert decision == Decision(
        Outcome.REFUSE, "no rule covers +x@ours.example", refusal=Refusal.UNKNOWN_ADDRESS
    )


def test_resolve_route_forwards_plus_local_part_to_its_exact_alias() -> None:
    plus = alias("+x")
    decision = decide("+x@ours.example", served(plus, catch_all()))
    assert (decision.rule, decision.matched_by) == (plus, MatchKind.EXACT)


# --- rules that do not receive mail ------------------------------------------------------

INACTIVE = [
    pytest.param({"enabled": False}, RuleState.DISABLED, "the rule is disabled", id="disabled"),
    pytest.param(
        {"expires_at": NOW - timedelta(seconds=1)},
        RuleState.EXPIRED,
        "the rule expired at 2026-11-29T11:59:59+00:00",
        id="expired",
    ),
    pytest.param(
        {"max_messages": 3, "message_count": 3},
        RuleState.LIMIT_REACHED,
        "the rule has accepted its limit of 3 messages",
        id="limit_reached",
    ),
    pytest.param(
        {"destinations": (NEW,)},
        RuleState.UNVERIFIED_DESTINATIONS,
        "waiting for verification of new@inbox.example",
        id="unverified",
    ),
    pytest.param(
        {"destinations": ()},
        RuleState.NO_DESTINATIONS,
        "the rule forwards to no destination",
        id="no_destinations",
    ),
]


@pytest.mark.parametrize(("fields", "state", "reason"), INACTIVE)
def test_resolve_route_refuses_inactive_alias_without_falling_through_to_catch_all(
    fields: dict[str, object], state: RuleState, reason: str
) -> None:
    shop = alias("shop", **fields)
    assert decide("shop@ours.example", served(shop, catch_all())) == Decision(
        Outcome.REFUSE,
        f"shop@ours.example is not receiving mail: {reason}",
        rule=shop,
        matched_by=MatchKind.EXACT,
        refusal=Refusal.RULE_INACTIVE,
        rule_state=state,
    )


def test_resolve_route_refuses_subaddress_of_disabled_alias_without_falling_through() -> None:
    shop = alias("shop", enabled=False)
    decision = decide("shop+news@ours.example", served(shop, catch_all()))
    assert (decision.outcome, decision.refusal, decision.rule, decision.matched_by) == (
        Outcome.REFUSE,
        Refusal.RULE_INACTIVE,
        shop,
        MatchKind.SUBADDRESS,
    )


def test_resolve_route_refuses_disabled_exact_alias_without_falling_back_to_base() -> None:
    tagged = alias("shop+news", enabled=False)
    decision = decide("shop+news@ours.example", served(alias("shop"), tagged))
    assert (decision.refusal, decision.rule) == (Refusal.RULE_INACTIVE, tagged)


def test_resolve_route_refuses_catch_all_with_unverified_destination() -> None:
    everything = catch_all(destinations=(NEW,))
    assert decide("nobody@ours.example", served(everything)) == Decision(
        Outcome.REFUSE,
        "nobody@ours.example is not receiving mail: waiting for verification of new@inbox.example",
        rule=everything,
        matched_by=MatchKind.CATCH_ALL,
        refusal=Refusal.RULE_INACTIVE,
        rule_state=RuleState.UNVERIFIED_DESTINATIONS,
    )


def test_resolve_route_forwards_until_expiry() -> None:
    shop = alias("shop", expires_at=NOW + timedelta(seconds=1))
    assert decide("shop@ours.example", served(shop)).outcome is Outcome.FORWARD


# --- drop and several destinations --------------------------------------------------------


def test_resolve_route_drops_for_drop_alias() -> None:
    shop = alias("shop", action=Action.DROP, destinations=())
    assert decide("shop@ours.example", served(shop)) == Decision(
        Outcome.DROP,
        "mail for shop@ours.example is accepted and discarded",
        rule=shop,
        matched_by=MatchKind.EXACT,
        rule_state=RuleState.ACTIVE,
    )


def test_resolve_route_drops_for_drop_catch_all() -> None:
    everything = catch_all(action=Action.DROP, destinations=())
    decision = decide("nobody@ours.example", served(everything))
    assert (decision.outcome, decision.matched_by, decision.destinations) == (
        Outcome.DROP,
        MatchKind.CATCH_ALL,
        (),
    )


def test_resolve_route_forwards_to_every_destination() -> None:
    shop = alias("shop", destinations=(ME, WORK))
    decision = decide("shop@ours.example", served(shop))
    assert (decision.destinations, decision.explanation) == (
        ("me@inbox.example", "work@inbox.example"),
        "mail for shop@ours.example is forwarded to me@inbox.example, work@inbox.example",
    )


# --- domains -----------------------------------------------------------------------------


def test_resolve_route_refuses_domain_not_served() -> None:
    assert decide("shop@foreign.example", None) == Decision(
        Outcome.REFUSE,
        "foreign.example is not a domain served here",
        refusal=Refusal.DOMAIN_NOT_SERVED,
    )


def test_resolve_route_refuses_address_on_other_domain_than_view() -> None:
    decision = decide("shop@foreign.example", served(alias("shop"), catch_all()))
    assert decision.refusal is Refusal.DOMAIN_NOT_SERVED


def test_resolve_route_refuses_ip_literal_as_domain_not_served() -> None:
    literal = Address("shop", "[192.0.2.1]", is_literal=True)
    view = DomainView("[192.0.2.1]", True, {CATCH_ALL_KEY: catch_all()})
    assert resolve_route(literal, view, NOW) == Decision(
        Outcome.REFUSE,
        "[192.0.2.1] is not a domain served here",
        refusal=Refusal.DOMAIN_NOT_SERVED,
    )


@pytest.mark.parametrize(
    ("outcome", "accepted"),
    [(Outcome.FORWARD, True), (Outcome.DROP, True), (Outcome.REFUSE, False)],
)
def test_decision_accepted_is_false_only_when_refused(outcome: Outcome, accepted: bool) -> None:
    assert Decision(outcome, "because").accepted is accepted


# --- lookup_keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "keys"),
    [
        ("shop@ours.example", ("shop", CATCH_ALL_KEY)),
        ("Shop@ours.example", ("shop", CATCH_ALL_KEY)),
        ("shop+news@ours.example", ("shop+news", "shop", CATCH_ALL_KEY)),
        ("Shop+News@ours.example", ("shop+news", "shop", CATCH_ALL_KEY)),
        ("shop+a+b@ours.example", ("shop+a+b", "shop", CATCH_ALL_KEY)),
        ("shop+@ours.example", ("shop+", "shop", CATCH_ALL_KEY)),
        ("+x@ours.example", ("+x", CATCH_ALL_KEY)),
    ],
)
def test_lookup_keys_lists_exact_base_and_catch_all_keys(raw: str, keys: tuple[str, ...]) -> None:
    assert lookup_keys(parse_address(raw)) == keys
