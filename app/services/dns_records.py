"""The DNS records to publish, checked live: a domain owner's, so that its mail reaches us,
and the server's own, so that what we forward is trusted (our DKIM keys, the SRS domain's
SPF, the host name's addresses)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from app.errors import DnsError, DnsNoSuchDomain
from app.resolver import Resolver
from app.signing.keys import SigningKey, public_key

log = logging.getLogger(__name__)

MX_PREFERENCE = 10
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DnsRecord:
    type: str
    name: str
    value: str
    # True: published; False: not (or something else is); None: the look-up failed.
    in_place: bool | None
    note: str


async def required_records(resolver: Resolver, domain: str, hostname: str) -> list[DnsRecord]:
    return [
        await _mx(resolver, domain, hostname),
        await _spf(resolver, domain),
        await _dmarc(resolver, domain),
    ]


async def _mx(resolver: Resolver, domain: str, hostname: str) -> DnsRecord:
    in_place = await _check(
        lambda: resolver.mx(domain),
        lambda records: any(r.exchange == hostname for r in records),
    )
    return DnsRecord(
        "MX",
        domain,
        f"{MX_PREFERENCE} {hostname}.",
        in_place,
        "routes the domain's mail to this server",
    )


async def _spf(resolver: Resolver, domain: str) -> DnsRecord:
    # Mail we forward leaves with an SRS sender on our host name, so the domain's own SPF
    # only has to cover mail sent as the domain; "mx" names this server, as its MX.
    in_place = await _check(
        lambda: resolver.txt(domain),
        lambda texts: any(_is_spf_with_mx(t) for t in texts),
    )
    return DnsRecord(
        "TXT",
        domain,
        "v=spf1 mx ~all",
        in_place,
        "SPF: lets this server send as the domain (keep your other senders in it)",
    )


async def _dmarc(resolver: Resolver, domain: str) -> DnsRecord:
    name = f"_dmarc.{domain}"
    in_place = await _check(
        lambda: resolver.txt(name),
        lambda texts: any(t.strip().lower().startswith("v=dmarc1") for t in texts),
    )
    return DnsRecord(
        "TXT",
        name,
        "v=DMARC1; p=none",
        in_place,
        "DMARC: a starting policy that only monitors; tighten it once reports look right",
    )


async def server_records(
    resolver: Resolver,
    hostname: str,
    signing_domain: str,
    keys: list[SigningKey],
    grace: timedelta,
) -> list[DnsRecord]:
    """The server's own records: its DKIM keys, SPF and addresses of the host name."""
    return [
        *await dkim_records(resolver, signing_domain, keys, grace),
        await _server_spf(resolver, hostname),
        *await _addresses(resolver, hostname),
    ]


async def dkim_records(
    resolver: Resolver, signing_domain: str, keys: list[SigningKey], grace: timedelta
) -> list[DnsRecord]:
    """One TXT per published key (RFC 6376 3.6.2.1), where receivers look up the key of
    our signature and seal; in place when the record there carries the same key."""
    return [await _dkim(resolver, signing_domain, key, grace) for key in keys]


async def _dkim(
    resolver: Resolver, signing_domain: str, key: SigningKey, grace: timedelta
) -> DnsRecord:
    name = f"{key.selector}._domainkey.{signing_domain}"
    expected = public_key(key)
    in_place = await _check(
        lambda: resolver.txt(name),
        lambda texts: any(_dkim_key(t) == expected for t in texts),
    )
    return DnsRecord("TXT", name, key.record(), in_place, _dkim_note(key, grace))


def _dkim_note(key: SigningKey, grace: timedelta) -> str:
    kind = "RSA" if key.algorithm == "rsa-sha256" else "Ed25519 (RFC 8463)"
    if key.retired_at is None:
        return f"DKIM: the {kind} key of our signature and ARC seal on forwarded mail"
    until = (key.retired_at + grace).date().isoformat()
    return f"DKIM: a retired {kind} key; keep it until {until} (mail it signed may be on its way)"


def _dkim_key(text: str) -> str | None:
    """The ``p=`` of a DKIM key record, without the folding whitespace it may carry."""
    tags = dict(part.strip().partition("=")[::2] for part in text.split(";") if "=" in part)
    if not tags.get("p") or tags.get("v", "DKIM1").strip() != "DKIM1":
        return None
    return "".join(tags["p"].split())


async def _server_spf(resolver: Resolver, hostname: str) -> DnsRecord:
    # Every forwarded copy leaves with an SRS sender on the host name (RFC 7208 2.4: SPF
    # checks MAIL FROM's domain), so that name's SPF must let this server send.
    in_place = await _check(
        lambda: resolver.txt(hostname),
        lambda texts: any(_is_spf_naming_hosts(t) for t in texts),
    )
    return DnsRecord(
        "TXT",
        hostname,
        "v=spf1 a -all",
        in_place,
        "SPF: the envelope sender of forwarded mail (SRS) is on this name; "
        "list this server's addresses (a, ip4:, ip6:)",
    )


async def _addresses(resolver: Resolver, hostname: str) -> list[DnsRecord]:
    try:
        found: list[str] | None = await resolver.addresses(hostname)
    except DnsNoSuchDomain:
        found = []
    except DnsError as exc:
        log.info("DNS check failed: %s", exc)
        found = None
    if not found:
        value = "your server's address"
        return [DnsRecord("A", hostname, value, None if found is None else False, ADDRESS_NOTE)]
    ipv4 = [a for a in found if ":" not in a]
    ipv6 = [a for a in found if ":" in a]
    return [
        DnsRecord(rdtype, hostname, ", ".join(addresses), True, ADDRESS_NOTE)
        for rdtype, addresses in (("A", ipv4), ("AAAA", ipv6))
        if addresses
    ]


ADDRESS_NOTE = "the host name's address: MX, SPF's a and receivers' checks of us lead here"


def _is_spf_naming_hosts(text: str) -> bool:
    terms = text.lower().split()
    return (
        bool(terms)
        and terms[0] == "v=spf1"
        and any(
            t.lstrip("+") == "a" or t.lstrip("+").startswith(("a:", "ip4:", "ip6:", "include:"))
            for t in terms
        )
    )


def _is_spf_with_mx(text: str) -> bool:
    terms = text.lower().split()
    return bool(terms) and terms[0] == "v=spf1" and any(t.lstrip("+~?") == "mx" for t in terms)


async def _check(lookup: Callable[[], Awaitable[T]], accept: Callable[[T], bool]) -> bool | None:
    try:
        return bool(accept(await lookup()))
    except DnsNoSuchDomain:
        return False
    except DnsError as exc:
        log.info("DNS check failed: %s", exc)
        return None
