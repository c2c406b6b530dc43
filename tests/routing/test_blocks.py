"""Blocked senders in the routing core (app.routing.blocks and the decision): pure, so
blocks are built by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.routing import (
    Action,
    DestinationView,
    DomainView,
    Outcome,
    Refusal,
    RuleKind,
    RuleView,
    parse_address,
    resolve_route,
)
from app.routing.blocks import MAX_SENDER_KEYS, BlockView, covers, sender_keys

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SHOP = RuleView(
    id=1,
    kind=RuleKind.ALIAS,
    local_part="shop",
    action=Action.FORWARD,
    destinations=(DestinationView("me@inbox.example", verified=True),),
)


def served(*blocks: BlockView) -> DomainView:
    return DomainView("ours.example", True, {"shop": SHOP}, blocks=blocks)


@pytest.mark.parametrize(
    ("block", "sender", "covered"),
    [
        ("spam@bad.example", "spam@bad.example", True),
        ("spam@bad.example", "SPAM@BAD.example", True),
        ("spam@bad.example", "other@bad.example", False),
        ("spam@bad.example", "spam@mail.bad.example", False),
        ("bad.example", "anyone@bad.example", True),
        ("bad.example", "anyone@mail.bad.example", True),
        ("bad.example", "anyone@notbad.example", False),
        ("bad.example", "anyone@bad.example.org", False),
        ("spam@bad.example", "", False),
        ("bad.example", "", False),
    ],
)
def test_covers_address_exactly_and_domain_with_subdomains(
    block: str, sender: str, covered: bool
) -> None:
    assert covers(BlockView(1, block), sender) is covered


def test_sender_keys_are_the_address_its_domain_and_parents() -> None:
    assert sender_keys("Spam@Mail.Bad.Example") == (
        "spam@mail.bad.example",
        "mail.bad.example",
        "bad.example",
    )


def test_sender_keys_of_the_null_sender_are_none() -> None:
    assert sender_keys("") == ()


def test_sender_keys_of_a_deep_domain_keep_its_own_and_the_shortest_parents() -> None:
    deep = "x@" + ".".join(f"l{n}" for n in range(20)) + ".bad.example"
    keys = sender_keys(deep)

    assert len(keys) == MAX_SENDER_KEYS
    assert keys[1] == deep.partition("@")[2]
    assert keys[-1] == "bad.example"


def test_resolve_route_refuses_a_blocked_sender() -> None:
    decision = resolve_route(
        parse_address("shop@ours.example"),
        served(BlockView(7, "bad.example")),
        NOW,
        "x@bad.example",
    )

    assert (decision.outcome, decision.refusal) == (Outcome.REFUSE, Refusal.BLOCKED_SENDER)
    assert decision.explanation == (
        "mail from x@bad.example to shop@ours.example is blocked (block 7: bad.example)"
    )


def test_resolve_route_applies_an_alias_scoped_block_to_that_alias_only() -> None:
    other_rule = BlockView(7, "bad.example", rule_id=SHOP.id + 1)
    mine = BlockView(8, "bad.example", rule_id=SHOP.id)
    address = parse_address("shop+tag@ours.example")

    assert resolve_route(address, served(other_rule), NOW, "x@bad.example").accepted
    assert not resolve_route(address, served(mine), NOW, "x@bad.example").accepted


def test_resolve_route_never_blocks_the_null_sender() -> None:
    view = served(BlockView(7, "bad.example"), BlockView(8, "spam@bad.example"))

    assert resolve_route(parse_address("shop@ours.example"), view, NOW, "").accepted


def test_resolve_route_unknown_address_stays_unknown_for_a_blocked_sender() -> None:
    decision = resolve_route(
        parse_address("nobody@ours.example"),
        served(BlockView(7, "bad.example")),
        NOW,
        "x@bad.example",
    )

    assert decision.refusal is Refusal.UNKNOWN_ADDRESS
