"""The inbound checks' DNS cache: a sender's records are asked once per TTL. Shown by
stopping the DNS server after a first check: with the cache the second check still
passes, without it the same check is a temperror."""

from __future__ import annotations

import dns.resolver
import pytest

from app.inbound_auth.checker import Envelope, InboundChecks
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.policy import Mode
from app.inbound_auth.verdicts import Verdicts
from app.resolver import DnsResolver
from tests.conftest import HOSTNAME
from tests.peers.dnsmasq import Dnsmasq, Zone

pytestmark = pytest.mark.dnsmasq

SENDER = "alice@cached.test"
TEXT = b"From: <alice@cached.test>\r\nSubject: cached\r\n\r\nHello.\r\n"
ZONE = Zone(
    txt=[
        ("cached.test", "v=spf1 ip4:127.0.0.0/8 -all"),
        ("_dmarc.cached.test", "v=DMARC1; p=reject"),
    ],
    local_domains=["cached.test"],
    ttl=300,
)


async def verdicts(checks: InboundChecks) -> Verdicts:
    envelope = Envelope("127.0.0.1", "client.cached.test", SENDER, ["a@example.org"], "q")
    spf = checks.start_spf("127.0.0.1", "client.cached.test", SENDER)
    checked = await checks.check(TEXT, envelope, spf)
    assert checked.verdicts is not None
    return checked.verdicts


@pytest.mark.parametrize("cached", [True, False], ids=["cache", "no-cache"])
async def test_dns_cache_answers_while_the_server_is_gone(cached: bool) -> None:
    server = Dnsmasq(ZONE)
    server.start()
    nameservers = [(server.host, server.port)]
    cache = dns.resolver.LRUCache(100) if cached else None
    checks = InboundChecks(
        mode=Mode.ENFORCE,
        authserv_id=HOSTNAME,
        resolver=DnsResolver(nameservers, lifetime=0.5, cache=cache),
        lookups=Lookups(nameservers, 0.5, cache=cache),
    )
    try:
        first = await verdicts(checks)
        server.stop()
        second = await verdicts(checks)
    finally:
        server.stop()
        await checks.aclose()
    assert (first.spf.result, first.dmarc.result) == ("pass", "pass")
    expected = ("pass", "pass") if cached else ("temperror", "temperror")
    assert (second.spf.result, second.dmarc.result) == expected
