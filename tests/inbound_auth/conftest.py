"""A real DNS server (dnsmasq) publishing SPF, DMARC and DKIM records for the checks, keys
made once per session, a DNS server that never answers, and a real rspamd."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from app.db.engine import session_scope
from app.inbound_auth.lookups import Lookups
from app.services import aliases, destinations, domains
from tests.peers import dkim_keys
from tests.peers.dkim_keys import Key, txt_strings
from tests.peers.dnsmasq import Dnsmasq, Zone
from tests.peers.rspamd import RspamdDaemon
from tests.smtp.stored import Sessionmaker

DKIM_DOMAIN = "dkim.auth.test"
ARC_DOMAIN = "arc.auth.test"
SILENT_LIFETIME = 0.5


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    return dkim_keys.rsa_key(tmp_path_factory.mktemp("dkim"))


@pytest.fixture(scope="session")
def ed25519_key() -> Key:
    """An ed25519 key (RFC 8463) made with PyNaCl, dkimpy's ed25519 library."""
    import nacl.encoding
    import nacl.signing

    key = nacl.signing.SigningKey.generate()
    public = key.verify_key.encode(nacl.encoding.Base64Encoder).decode()
    return Key(key.encode(nacl.encoding.Base64Encoder), f"v=DKIM1; k=ed25519; p={public}")


SPF_RECORDS = [
    ("pass.auth.test", "v=spf1 ip4:127.0.0.0/8 -all"),
    ("fail.auth.test", "v=spf1 -all"),
    ("softfail.auth.test", "v=spf1 ~all"),
    ("neutral.auth.test", "v=spf1 ?all"),
    ("none.auth.test", "not an SPF record"),
    ("twice.auth.test", "v=spf1 ip4:127.0.0.0/8 -all"),
    ("twice.auth.test", "v=spf1 -all"),
    ("syntax.auth.test", "v=spf1 ip4:300.1.2.3 -all"),
    ("include.auth.test", "v=spf1 include:_spf.provider.auth.test -all"),
    ("_spf.provider.auth.test", "v=spf1 a:out.provider.auth.test mx:mx.auth.test -all"),
    ("mx.auth.test", "v=spf1 mx -all"),
    ("helo.auth.test", "v=spf1 ip4:127.0.0.1 -all"),
    ("explained.auth.test", "v=spf1 -all exp=why.auth.test"),
    ("why.auth.test", "%{i} does not send for %{d}. " * 12),
]


# dmarc.test is an organizational domain of its own (the Public Suffix List's default
# rule makes "test" a suffix): its sp= covers sub.dmarc.test, and nothing of auth.test.
DMARC_RECORDS = [
    ("_dmarc.dmarc.test", "v=DMARC1; p=none; sp=reject"),
    ("_dmarc.reject.dmarc.test", "v=DMARC1; p=reject"),
    ("_dmarc.quarantine.dmarc.test", "v=DMARC1; p=quarantine"),
]


@pytest.fixture(scope="session")
def zone(rsa_key: Key, ed25519_key: Key) -> Zone:
    keys = [
        (f"rsa._domainkey.{DKIM_DOMAIN}", txt_strings(rsa_key.record)),
        (f"ed._domainkey.{DKIM_DOMAIN}", txt_strings(ed25519_key.record)),
        (f"broken._domainkey.{DKIM_DOMAIN}", "v=DKIM1; k=rsa; p=bm90IGEga2V5"),
        (f"arc._domainkey.{ARC_DOMAIN}", txt_strings(rsa_key.record)),
    ]
    return Zone(
        txt=SPF_RECORDS + DMARC_RECORDS + keys,
        # out.provider is 127.0.0.2: the include passes through its "mx", not its "a".
        hosts=[("out.provider.auth.test", "192.0.2.1"), ("mail.auth.test", "127.0.0.2")],
        mx=[("mx.auth.test", "mail.auth.test", 10)],
        local_domains=["auth.test", "dmarc.test"],
    )


@pytest.fixture(scope="session")
def dns_server(zone: Zone) -> Iterator[Dnsmasq]:
    server = Dnsmasq(zone)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lookups(dns_server: Dnsmasq) -> Iterator[Lookups]:
    """Lookups over dnsmasq, and only dnsmasq: the system's resolver knows no auth.test."""
    checks = Lookups([(dns_server.host, dns_server.port)], lifetime=5.0)
    yield checks
    checks.close()


@pytest.fixture
def silent_nameserver() -> Iterator[tuple[str, int]]:
    """A "DNS server" that never replies: a bound UDP socket on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


@pytest.fixture
def silent_lookups(silent_nameserver: tuple[str, int]) -> Iterator[Lookups]:
    checks = Lookups([silent_nameserver], lifetime=SILENT_LIFETIME)
    yield checks
    checks.close()


@pytest.fixture(scope="session")
def rspamd_url(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[str]:
    """A real rspamd, started once for the session by the first test that asks for it."""
    # pytest's cache keeps rspamd's compiled rules between runs (see tests/peers/rspamd.py).
    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    cache_dir = cache.mkdir("rspamd-hyperscan") if cache is not None else None
    daemon = RspamdDaemon(tmp_path_factory.mktemp("rspamd"), cache_dir)
    daemon.start()
    try:
        yield daemon.url
    finally:
        daemon.stop()


@pytest.fixture
async def routed(sessionmaker: Sessionmaker) -> None:
    """example.org serving shop@, forwarded to a verified me@inbox.example."""
    async with session_scope(sessionmaker) as s:
        await domains.create_domain(s, "example.org")
        await destinations.add_verified_destination(s, "me@inbox.example")
        await aliases.create_alias(
            s, "example.org", local_part="shop", destinations=["me@inbox.example"]
        )
