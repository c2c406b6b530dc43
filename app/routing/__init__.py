"""The pure routing core: address + rules -> forward, drop or refuse.

Nothing here performs I/O or knows of HTTP, SMTP or the database; the API's
``/v1/route`` and the SMTP server's RCPT TO both call :func:`resolve_route`.
"""

from app.routing.address import (
    Address,
    normalize_domain,
    normalize_local_part,
    parse_address,
    refuse_special_use,
)
from app.routing.decision import (
    Decision,
    MatchKind,
    Outcome,
    Refusal,
    lookup_keys,
    resolve_route,
)
from app.routing.rules import (
    CATCH_ALL_KEY,
    Action,
    DestinationView,
    DomainView,
    RuleKind,
    RuleState,
    RuleView,
    rule_state,
)

__all__ = [
    "CATCH_ALL_KEY",
    "Action",
    "Address",
    "Decision",
    "DestinationView",
    "DomainView",
    "MatchKind",
    "Outcome",
    "Refusal",
    "RuleKind",
    "RuleState",
    "RuleView",
    "lookup_keys",
    "normalize_domain",
    "normalize_local_part",
    "parse_address",
    "refuse_special_use",
    "resolve_route",
    "rule_state",
]
