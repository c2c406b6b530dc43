"""pyspf's module-global DNS function, replaced here and nowhere else.

pyspf 2.0 asks DNS through ``spf.DNSLookup``, a module global set at import to a function
over dnspython's global ``dns.resolver.query``: deprecated (a DeprecationWarning on every
call), and bound to the system's resolver rather than the servers the operator configured
(``MAILROUTE_DNS_NAMESERVERS``). pyspf has no parameter for another resolver, so this module
replaces the global once, at import, with :func:`lookup`, which asks the
:class:`~app.inbound_auth.lookups.Lookups` of the check under way. That check is found
through a context variable that :func:`check` sets in the worker thread (Lookups.run copies
the context, so concurrent checks never see each other's).

What we rely on (TOUCHED), checked by tests/inbound_auth/test_pyspf_seams.py against the
installed pyspf, which names the member an upgrade changed; the pin in pyproject.toml
(>=2.0.14,<3) is the other half of the fence.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import dns.rdata
import spf

from app.errors import DnsTemporaryFailure
from app.inbound_auth.lookups import Lookups

# What we rely on, and why: one line each.
TOUCHED = {
    "DNSLookup": "replaced: the module global every pyspf DNS query goes through",
    "query.dns": "its one caller: DNSLookup(name, qtype, strict, timeout), ((name, qtype), v)",
    "TempError": "raised by lookup() for a DNS failure; query.check answers temperror",
}

_current: ContextVar[Lookups | None] = ContextVar("pyspf_lookups", default=None)


def lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20.0) -> list[Any]:
    """pyspf's DNSLookup contract: ``((name, qtype), value)`` pairs, as pyspf's own
    dnspython function returns them; [] for NXDOMAIN or no record; spf.TempError for a
    timeout or SERVFAIL (RFC 7208 5: a DNS error other than "no such name" is temperror)."""
    lookups = _current.get()
    if lookups is None:
        raise RuntimeError("pyspf asked DNS outside app.inbound_auth.pyspf_seams.check")
    try:
        found = lookups.records(name, qtype, lifetime=timeout)
    except DnsTemporaryFailure as exc:
        raise spf.TempError(f"DNS {exc}") from exc
    return [((name, qtype), _value(qtype, rdata)) for rdata in found]


def _value(qtype: str, rdata: dns.rdata.Rdata) -> Any:
    if qtype in ("A", "AAAA"):
        return rdata.address  # type: ignore[attr-defined]
    if qtype == "MX":
        return (rdata.preference, rdata.exchange.to_text(True))  # type: ignore[attr-defined]
    if qtype == "PTR":
        return rdata.target.to_text(True)  # type: ignore[attr-defined]
    return rdata.strings  # type: ignore[attr-defined]  # TXT, SPF: a record's strings


def check(lookups: Lookups, query: Any) -> tuple[str, int, str]:
    """``query.check()`` with its DNS through ``lookups``. Blocking: run it in
    ``lookups.run``."""
    token = _current.set(lookups)
    try:
        result: tuple[str, int, str] = query.check()
        return result
    finally:
        _current.reset(token)


spf.DNSLookup = lookup
