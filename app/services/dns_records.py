"""The DNS records a domain's owner publishes so that its mail reaches us, checked live."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from app.errors import DnsError, DnsNoSuchDomain
from app.resolver import Resolver

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
