"""Counting an accepted message against the rules that accepted it, atomically.

RCPT decides on what it read (app.services.routes); by the time the message is stored,
concurrent sessions may have used up a rule's ``max_messages``, or the owner may have
disabled it. So the count is taken where the message is stored, in the same transaction,
by an UPDATE whose WHERE says the rule may still receive: the database decides, one
writer at a time (PostgreSQL re-checks a conditional UPDATE against the row as committed
by whoever updated it first; SQLite has one writer). A rule that no longer may receive
is not counted, and its recipients get nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, or_, update
from sqlalchemy.orm import Session

from app.db.models import Rule

_rules = cast(Table, Rule.__table__)


def _may_receive(uses: ColumnElement[Any] | int) -> ColumnElement[bool]:
    """Enabled, not expired, and ``uses`` more messages within its limit (as
    app.routing.rules.rule_state decides at RCPT)."""
    return and_(
        _rules.c.enabled,
        or_(_rules.c.expires_at.is_(None), _rules.c.expires_at > bindparam("now")),
        or_(
            _rules.c.max_messages.is_(None),
            _rules.c.message_count + uses <= _rules.c.max_messages,
        ),
    )


# One more message for one rule, if it may still take one.
_TAKE_ONE = (
    update(_rules)
    .where(_rules.c.id == bindparam("rule"), _may_receive(1))
    .values(message_count=_rules.c.message_count + 1)
)


def reserve(session: Session, wanted: Sequence[set[int]], now: datetime) -> list[set[int]]:
    """Count each message once against each rule in its set of ``wanted`` rule ids (one
    set per message, in order); return, per message, the rules that took it. A rule short
    of room for all the batch's messages takes the first ones it has room for.

    One UPDATE for the whole batch when every rule has room (the usual case); one per
    message only for the rules that did not."""
    demand = Counter(rule for rules in wanted for rule in rules)
    if not demand:
        return [set() for _ in wanted]
    uses = case(dict(demand), value=_rules.c.id)
    whole = (
        update(_rules)
        .where(_rules.c.id.in_(list(demand)), _may_receive(uses))
        .values(message_count=_rules.c.message_count + uses)
        .returning(_rules.c.id)
    )
    granted = set(session.scalars(whole, {"now": now}))
    exhausted: set[int] = set()
    taken: list[set[int]] = []
    for rules in wanted:
        mine = rules & granted
        for rule in sorted(rules - granted - exhausted):  # in id order: no lock cycles
            if _take_one(session, rule, now):
                mine.add(rule)
            else:
                exhausted.add(rule)
        taken.append(mine)
    return taken


def _take_one(session: Session, rule: int, now: datetime) -> bool:
    result = session.execute(_TAKE_ONE, {"rule": rule, "now": now})
    return bool(getattr(result, "rowcount", 0) == 1)
