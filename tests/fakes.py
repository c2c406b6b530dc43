"""Injected seams for fast tests: a resolver answering from dictionaries."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.errors import DnsNoSuchDomain, DnsTemporaryFailure
from app.resolver import MxRecord


@dataclass
class FakeResolver:
    """Answers like app.resolver.DnsResolver. Names not listed anywhere get NXDOMAIN,
    except those in ``failing`` (a temporary failure) and those given only some records."""

    mx_records: dict[str, list[MxRecord]] = field(default_factory=dict)
    txt_records: dict[str, list[str]] = field(default_factory=dict)
    address_records: dict[str, list[str]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def _known(self, name: str) -> bool:
        return any(name in d for d in (self.mx_records, self.txt_records, self.address_records))

    def _check(self, name: str, rdtype: str) -> None:
        self.queries.append((rdtype, name))
        if name in self.failing:
            raise DnsTemporaryFailure(f"{name}: SERVFAIL (fake)")
        if not self._known(name):
            raise DnsNoSuchDomain(f"{name} does not exist (fake)")

    async def mx(self, domain: str) -> list[MxRecord]:
        self._check(domain, "MX")
        return list(self.mx_records.get(domain, []))

    async def txt(self, name: str) -> list[str]:
        self._check(name, "TXT")
        return list(self.txt_records.get(name, []))

    async def addresses(self, name: str) -> list[str]:
        self._check(name, "A")
        return list(self.address_records.get(name, []))

    def add_mailbox_domain(self, domain: str) -> None:
        """A domain that receives mail, as most destinations' domains do."""
        self.mx_records[domain] = [MxRecord(10, f"mx.{domain}")]
