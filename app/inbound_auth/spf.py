"""SPF (RFC 7208): may the client's address send for the MAIL FROM domain, or, for the
null sender, for its HELO name? Checked by pyspf, its DNS through our Lookups."""

from __future__ import annotations

import ipaddress

import spf

from app.inbound_auth import pyspf_seams
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.reasons import reason
from app.inbound_auth.verdicts import (
    FAIL,
    NEUTRAL,
    NONE,
    PASS,
    PERMERROR,
    SOFTFAIL,
    TEMPERROR,
    Spf,
)

# RFC 7208 4.6.4: a check MAY be bounded in time ("at least 20 seconds" SHOULD be
# allowed), and running out is temperror. pyspf's querytime bounds the time spent in DNS
# over the whole check; four lifetimes of one query are 20 s at the default lifetime.
LIFETIMES_PER_CHECK = 4

_RESULTS = {
    "pass": PASS,
    "fail": FAIL,
    "softfail": SOFTFAIL,
    "neutral": NEUTRAL,
    "none": NONE,
    "temperror": TEMPERROR,
    "permerror": PERMERROR,
}


async def check_spf(lookups: Lookups, *, client_ip: str, helo: str | None, mail_from: str) -> Spf:
    """The SPF verdict for a client at ``client_ip`` that said ``helo`` and gave
    ``mail_from`` ("" for the null sender, <>)."""
    local, _, domain = mail_from.rpartition("@") if mail_from else ("", "", helo or "")
    # RFC 7208 4.3: the domain is what follows the (last) "@", as pyspf splits it; for <>
    # check_host() runs on "postmaster@" the HELO name (RFC 7208 2.4).
    identity = "mailfrom" if mail_from else "helo"
    domain = domain.rstrip(".").lower()
    if not _is_domain_name(domain):
        # RFC 7208 4.3: a sender domain that is not a name gives "none"; so does a HELO
        # that is an address literal or no name at all (RFC 7208 2.3).
        return Spf(NONE, "", identity)
    query = spf.query(
        i=client_ip,
        s=f"{local}@{domain}" if mail_from else "",
        h=domain if not mail_from else (helo or ""),
        querytime=lookups.lifetime * LIFETIMES_PER_CHECK,
    )
    word, _code, explanation = await lookups.run(pyspf_seams.check, lookups, query)
    return Spf(_RESULTS.get(word, PERMERROR), domain, identity, reason(explanation))


def _is_domain_name(name: str) -> bool:
    """A fully qualified name (two labels at least), not an address or a literal."""
    if not name or name.startswith("[") or "." not in name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return False
    return all(0 < len(label) < 64 for label in name.split("."))
