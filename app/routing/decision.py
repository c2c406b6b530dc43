"""The routing decision: which rule covers an address, and what happens to its mail.

Precedence: an exact alias beats ``local+tag`` (when the domain has subaddressing,
RFC 5233) beats the catch-all. A rule that matches but does not receive mail (disabled,
expired, over its limit, unverified destinations) refuses the address: it does not fall
through to the catch-all, so disabling a leaked disposable address really stops it.

A blocked sender (app.routing.blocks) is refused for an address a rule covers: one the
block's scope includes, refused as not authorised (RFC 3463 X.7.1) rather than unknown.
An address no rule covers stays "unknown" whoever sends to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.routing.address import Address
from app.routing.blocks import covers
from app.routing.rules import (
    CATCH_ALL_KEY,
    Action,
    DomainView,
    RuleState,
    RuleView,
    rule_state,
)
from app.routing.srs import Srs, SrsInvalid

SUBADDRESS_SEPARATOR = "+"


class Outcome(StrEnum):
    FORWARD = "forward"
    DROP = "drop"
    REFUSE = "refuse"


class MatchKind(StrEnum):
    EXACT = "exact"
    SUBADDRESS = "subaddress"
    CATCH_ALL = "catch_all"
    SRS = "srs"  # a bounce to one of our SRS addresses, returned to the original sender
    POSTMASTER = "postmaster"  # <postmaster> or postmaster@ our host name (RFC 5321 4.5.1)


class Refusal(StrEnum):
    """Why an address is refused; the SMTP server maps each to a reply code."""

    DOMAIN_NOT_SERVED = "domain_not_served"  # a relay attempt: 550 5.7.1
    UNKNOWN_ADDRESS = "unknown_address"  # 550 5.1.1
    RULE_INACTIVE = "rule_inactive"  # 550 5.1.1, like an unknown address
    BAD_SRS = "bad_srs"  # a forged or expired bounce address of ours: 550 5.1.1
    SRS_NOT_BOUNCE = "srs_not_bounce"  # our bounce address, from a sender not <>: 550 5.7.1
    NO_POSTMASTER = "no_postmaster"  # postmaster, with no operator address set: 550 5.1.1
    BLOCKED_SENDER = "blocked_sender"  # the sender is blocked for the address: 550 5.7.1


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    explanation: str
    rule: RuleView | None = None
    matched_by: MatchKind | None = None
    destinations: tuple[str, ...] = ()
    refusal: Refusal | None = None
    rule_state: RuleState | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome is not Outcome.REFUSE


def base_key(key: str) -> str | None:
    """``shop`` for ``shop+news``; None when the key has no (non-empty) base."""
    base, sep, _ = key.partition(SUBADDRESS_SEPARATOR)
    return base if sep and base else None


def lookup_keys(address: Address) -> tuple[str, ...]:
    """Every rule key that may decide ``address``: what the one indexed query fetches."""
    keys = [address.key]
    base = base_key(address.key)
    if base is not None:
        keys.append(base)
    keys.append(CATCH_ALL_KEY)
    return tuple(keys)


def resolve_route(
    address: Address, domain: DomainView | None, now: datetime, sender: str = ""
) -> Decision:
    """Decide what happens to mail for ``address`` from ``sender`` ("" for <>), given the
    rules (and blocks) fetched for it."""
    if domain is None or address.is_literal or address.domain != domain.name:
        return Decision(
            Outcome.REFUSE,
            f"{address.domain} is not a domain served here",
            refusal=Refusal.DOMAIN_NOT_SERVED,
        )
    match = _match(address, domain)
    if match is None:
        return Decision(
            Outcome.REFUSE,
            f"no rule covers {address}",
            refusal=Refusal.UNKNOWN_ADDRESS,
        )
    rule, matched_by = match
    blocked = next(
        (b for b in domain.blocks if b.rule_id in (None, rule.id) and sender and covers(b, sender)),
        None,
    )
    if blocked is not None:
        return Decision(
            Outcome.REFUSE,
            f"mail from {sender} to {address} is blocked (block {blocked.id}: {blocked.sender})",
            rule=rule,
            matched_by=matched_by,
            refusal=Refusal.BLOCKED_SENDER,
        )
    return _apply(rule, matched_by, address, now)


def _apply(rule: RuleView, matched_by: MatchKind, address: Address, now: datetime) -> Decision:
    """What the rule that covers ``address`` does with its mail: refuse it while the rule
    does not receive mail (no falling through to the catch-all), else drop or forward."""
    state, reason = rule_state(rule, now)
    if state is not RuleState.ACTIVE:
        return Decision(
            Outcome.REFUSE,
            f"{address} is not receiving mail: {reason}",
            rule=rule,
            matched_by=matched_by,
            refusal=Refusal.RULE_INACTIVE,
            rule_state=state,
        )
    if rule.action is Action.DROP:
        return Decision(
            Outcome.DROP,
            f"mail for {address} is accepted and discarded",
            rule=rule,
            matched_by=matched_by,
            rule_state=state,
        )
    destinations = tuple(d.email for d in rule.destinations)
    return Decision(
        Outcome.FORWARD,
        f"mail for {address} is forwarded to " + ", ".join(destinations),
        rule=rule,
        matched_by=matched_by,
        destinations=destinations,
        rule_state=state,
    )


def resolve_srs_bounce(address: Address, srs: Srs, sender: str) -> Decision:
    """Mail to an SRS address of ours: a bounce, relayed back to the sender it encodes.

    Only from the null sender: bounces (RFC 5321 4.5.5), DSNs (RFC 3464) and automatic
    replies (RFC 3834 3.3) all come from <>. Anything else sent to a real SRS address
    (every destination sees it as Return-Path) would have us relay any sender's content
    to the original sender for as long as the address is valid.
    """
    if sender:
        return Decision(
            Outcome.REFUSE,
            f"{address} is a bounce address: only mail from the null sender <> goes to it",
            refusal=Refusal.SRS_NOT_BOUNCE,
        )
    try:
        original = srs.reverse(address)
    except SrsInvalid as exc:
        return Decision(
            Outcome.REFUSE,
            f"{address} is not a valid SRS address of this server: {exc}",
            refusal=Refusal.BAD_SRS,
        )
    return Decision(
        Outcome.FORWARD,
        f"mail for {address} is returned to the original sender {original}",
        matched_by=MatchKind.SRS,
        destinations=(original,),
    )


def resolve_postmaster(address: Address, postmaster: str | None) -> Decision:
    """Mail for the server's own postmaster (RFC 5321 4.5.1: it MUST be accepted), which
    goes to the operator's address."""
    if not postmaster:
        return Decision(
            Outcome.REFUSE,
            f"{address} has no operator address to go to (MAILROUTE_POSTMASTER is not set)",
            refusal=Refusal.NO_POSTMASTER,
        )
    return Decision(
        Outcome.FORWARD,
        f"mail for {address} is forwarded to the operator, {postmaster}",
        matched_by=MatchKind.POSTMASTER,
        destinations=(postmaster,),
    )


def _match(address: Address, domain: DomainView) -> tuple[RuleView, MatchKind] | None:
    exact = domain.rules.get(address.key)
    if exact is not None and address.key != CATCH_ALL_KEY:
        return exact, MatchKind.EXACT
    base = base_key(address.key)
    if domain.subaddressing and base is not None:
        rule = domain.rules.get(base)
        if rule is not None:
            return rule, MatchKind.SUBADDRESS
    catch_all = domain.rules.get(CATCH_ALL_KEY)
    if catch_all is not None and catch_all.enabled:
        return catch_all, MatchKind.CATCH_ALL
    return None
