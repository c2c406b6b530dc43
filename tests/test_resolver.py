"""app.resolver against a real DNS server: dnsmasq on loopback."""

from __future__ import annotations

import pytest

from app.errors import DnsNoSuchDomain, DnsTemporaryFailure
from app.resolver import DnsResolver, MxRecord, is_null_mx
from tests.peers.dnsmasq import Dnsmasq, Zone

pytestmark = pytest.mark.dnsmasq


@pytest.fixture
def dnsmasq_zone() -> Zone:
    return Zone(
        local_domains=["example.org", "example.net"],
        mx=[
            ("example.org", "mx2.example.org", 20),
            ("example.org", "mx1.example.org", 10),
            ("nullmx.example.net", "", 0),
        ],
        txt=[("example.org", "v=spf1 mx ~all"), ("_dmarc.example.org", "v=DMARC1; p=none")],
        hosts=[("mx1.example.org", "127.0.0.2"), ("inbox.example.net", "127.0.0.3")],
    )


@pytest.fixture
def resolver(dnsmasq: Dnsmasq) -> DnsResolver:
    return DnsResolver([(dnsmasq.host, dnsmasq.port)], lifetime=3)


async def test_resolver_mx_records(resolver: DnsResolver) -> None:
    records = sorted(await resolver.mx("example.org"), key=lambda r: r.preference)
    assert records == [MxRecord(10, "mx1.example.org"), MxRecord(20, "mx2.example.org")]


async def test_resolver_null_mx(resolver: DnsResolver) -> None:
    records = await resolver.mx("nullmx.example.net")
    assert records == [MxRecord(0, "")]
    assert is_null_mx(records)


async def test_resolver_no_mx_is_empty(resolver: DnsResolver) -> None:
    assert await resolver.mx("inbox.example.net") == []


async def test_resolver_addresses(resolver: DnsResolver) -> None:
    assert await resolver.addresses("inbox.example.net") == ["127.0.0.3"]


async def test_resolver_txt(resolver: DnsResolver) -> None:
    assert await resolver.txt("_dmarc.example.org") == ["v=DMARC1; p=none"]


async def test_resolver_nxdomain(resolver: DnsResolver) -> None:
    with pytest.raises(DnsNoSuchDomain):
        await resolver.mx("missing.example.net")


async def test_resolver_refused_is_temporary(resolver: DnsResolver) -> None:
    # dnsmasq has no upstream: names outside its zones are REFUSED, not NXDOMAIN.
    with pytest.raises(DnsTemporaryFailure):
        await resolver.mx("elsewhere.invalid")


async def test_resolver_unreachable_server_is_temporary() -> None:
    resolver = DnsResolver([("127.0.0.1", 9)], lifetime=0.5)
    with pytest.raises(DnsTemporaryFailure):
        await resolver.mx("example.org")
