"""DNS look-ups through dnspython's async resolver, its exceptions translated to ours.

Services and the delivery worker take a :class:`Resolver`; tests inject a fake one with the
same methods, or point the real one at dnsmasq on loopback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver

from app.errors import DnsNoSuchDomain, DnsTemporaryFailure

DEFAULT_LIFETIME = 5.0


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    exchange: str  # without the trailing dot; "" is the root, as in a null MX


class Resolver(Protocol):
    async def mx(self, domain: str) -> list[MxRecord]:
        """MX records of ``domain``; [] when it has none. Raises DnsError."""

    async def txt(self, name: str) -> list[str]:
        """TXT strings at ``name`` (each record's strings joined); [] when none."""

    async def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of ``name``; [] when none."""


def is_null_mx(records: list[MxRecord]) -> bool:
    """RFC 7505: a single MX of preference 0 pointing at the root says "no mail here"."""
    return len(records) == 1 and records[0].exchange == ""


def _host(name: dns.name.Name) -> str:
    return "" if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


class DnsResolver:
    """:class:`Resolver` over dnspython, optionally with our own ``(ip, port)`` servers."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None = None,
        lifetime: float = DEFAULT_LIFETIME,
        cache: dns.resolver.LRUCache | None = None,
    ) -> None:
        """``cache``: answers kept for their TTL (None: every look-up asks a server)."""
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
            ]
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = lifetime
        self._resolver.cache = cache

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        try:
            return await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise DnsNoSuchDomain(f"{name} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            return None
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise DnsTemporaryFailure(f"DNS look-up of {rdtype} {name} failed: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTemporaryFailure(f"DNS look-up of {rdtype} {name} failed: {exc}") from exc

    async def mx(self, domain: str) -> list[MxRecord]:
        answer = await self._query(domain, "MX")
        if answer is None:
            return []
        return [MxRecord(rr.preference, _host(rr.exchange)) for rr in answer]

    async def txt(self, name: str) -> list[str]:
        answer = await self._query(name, "TXT")
        if answer is None:
            return []
        return [b"".join(rr.strings).decode("utf-8", "replace") for rr in answer]

    async def ipv4(self, name: str) -> list[str]:
        """A records of ``name`` (a DNS blocklist's answer); [] when none."""
        answer = await self._query(name, "A")
        return [] if answer is None else [rr.address for rr in answer]

    async def addresses(self, name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self._query(name, rdtype)
            if answer is not None:
                found.extend(rr.address for rr in answer)
        return found
