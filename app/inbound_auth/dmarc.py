"""DMARC (RFC 7489): the From: domain's published policy applied to SPF and DKIM.

Discovery asks ``_dmarc.<From domain>``, then ``_dmarc.<organizational domain>`` (6.6.3),
the organizational domain coming from the Public Suffix List (publicsuffixlist, kept up
to date by its maintainers, 3.2). Evaluation is pure: :func:`evaluate` takes the record
and the SPF and DKIM verdicts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

from app.errors import DnsNoSuchDomain, DnsTemporaryFailure
from app.inbound_auth.verdicts import (
    FAIL,
    NONE,
    PASS,
    PERMERROR,
    TEMPERROR,
    Dkim,
    Dmarc,
    Spf,
)
from app.resolver import Resolver

POLICIES = ("none", "quarantine", "reject")
MAX_RECORD_OCTETS = 4096  # a policy is a few tags; anything longer is not read


@dataclass(frozen=True, slots=True)
class Record:
    """The tags of a DMARC record that decide a message's fate (RFC 7489 6.3)."""

    policy: str  # p=
    subdomain_policy: str | None = None  # sp=
    percent: int = 100  # pct=
    strict_dkim: bool = False  # adkim=s
    strict_spf: bool = False  # aspf=s


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # parses the bundled list once


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the registrable domain, one label below its public suffix."""
    domain = domain.rstrip(".").lower()
    return _suffixes().privatesuffix(domain) or domain


def aligned(one: str, other: str, *, strict: bool) -> bool:
    """RFC 7489 3.1: identical (strict), or the same organizational domain (relaxed)."""
    one, other = one.rstrip(".").lower(), other.rstrip(".").lower()
    if one == other:
        return True
    return not strict and organizational_domain(one) == organizational_domain(other)


def parse_record(text: str) -> Record | None:
    """A DMARC record's tags, or None when ``text`` is not a usable DMARC record."""
    if len(text) > MAX_RECORD_OCTETS:
        return None
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        return None
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        # 6.6.3: a record without a valid p= but with a valid rua= is read as p=none;
        # we send no reports, so any such record means "none".
        if "rua" not in tags:
            return None
        policy = "none"
    subdomain = tags.get("sp", "").lower()
    return Record(
        policy=policy,
        subdomain_policy=subdomain if subdomain in POLICIES else None,
        percent=_percent(tags.get("pct", "100")),
        strict_dkim=tags.get("adkim", "r").lower() == "s",
        strict_spf=tags.get("aspf", "r").lower() == "s",
    )


def _percent(text: str) -> int:
    try:
        return min(100, max(0, int(text)))
    except ValueError:
        return 100  # 6.3: an invalid pct= is ignored


def _milder(policy: str) -> str:
    """6.6.4: the policy that applies to a message not sampled by pct=."""
    return {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")


def evaluate(
    from_domain: str,
    record: Record,
    *,
    is_subdomain: bool,
    spf: Spf,
    dkim: Dkim,
    sample: float,
) -> Dmarc:
    """The DMARC result of a message whose From: domain published (or inherited, with
    ``is_subdomain``) ``record``; ``sample`` in [0, 1) decides pct= (6.6.4)."""
    policy = record.policy
    if is_subdomain and record.subdomain_policy:
        policy = record.subdomain_policy
    spf_aligned = spf.result == PASS and aligned(spf.domain, from_domain, strict=record.strict_spf)
    dkim_aligned = any(
        aligned(domain, from_domain, strict=record.strict_dkim) for domain in dkim.passing_domains()
    )
    if spf_aligned or dkim_aligned:
        how = "spf" if spf_aligned else "dkim"
        return Dmarc(PASS, from_domain, policy, NONE, f"aligned {how} pass")
    disposition = policy if sample * 100 < record.percent else _milder(policy)
    return Dmarc(FAIL, from_domain, policy, disposition, "no aligned SPF or DKIM pass")


async def check_dmarc(
    resolver: Resolver,
    from_domains: list[str],
    *,
    spf: Spf,
    dkim: Dkim,
    sample: Callable[[], float] = random.random,
) -> Dmarc:
    """Discover the From: domain's policy and evaluate the message against it."""
    if len(from_domains) != 1 or not from_domains[0]:
        # 6.6.1: no single author domain; such messages are not DMARC-evaluable.
        reason = "no From: address" if not from_domains else "several From: addresses"
        return Dmarc(PERMERROR if from_domains else NONE, None, reason=reason)
    from_domain = from_domains[0]
    try:
        record = await _record(resolver, from_domain)
        organization = organizational_domain(from_domain)
        is_subdomain = False
        if record is None and organization != from_domain:
            record = await _record(resolver, organization)
            is_subdomain = True
    except DnsTemporaryFailure as exc:
        return Dmarc(TEMPERROR, from_domain, reason=str(exc))
    if record is None:
        return Dmarc(NONE, from_domain, reason="no DMARC record")
    return evaluate(
        from_domain, record, is_subdomain=is_subdomain, spf=spf, dkim=dkim, sample=sample()
    )


async def _record(resolver: Resolver, domain: str) -> Record | None:
    """The one DMARC record at ``_dmarc.<domain>``; None when there is none or several
    (6.6.3: then DMARC does not apply)."""
    try:
        texts = await resolver.txt(f"_dmarc.{domain}")
    except DnsNoSuchDomain:
        return None
    records = [t for t in texts if t[:8].strip().upper().startswith("V=DMARC1")]
    if len(records) != 1:
        return None
    return parse_record(records[0])
