"""Keys for the signing tests, published by a real DNS server (dnsmasq), a dkimpy key
look-up through it, and a real rspamd that looks its keys up there too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dns.resolver
import pytest

from tests.peers import dkim_keys
from tests.peers.dkim_keys import Key, txt_strings
from tests.peers.dnsmasq import Dnsmasq, Zone
from tests.peers.rspamd import running_rspamd

OUR_DOMAIN = "forward.sign.test"  # d= of our signatures
AUTHSERV_ID = "mx.forward.sign.test"  # our MAILROUTE_HOSTNAME
SENDER_DOMAIN = "sender.sign.test"
UPSTREAM_DOMAIN = "upstream.sign.test"  # another forwarder, which sealed before us


@dataclass(frozen=True)
class SigningKey:
    """A stand-in for app.signing.keys.SigningKey: what the signer reads of it."""

    selector: str
    algorithm: str
    private_key: bytes


@dataclass(frozen=True)
class Keys:
    ours_rsa: Key
    ours_ed25519: Key
    sender: Key
    upstream: Key


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    def rsa(name: str) -> Key:
        return dkim_keys.rsa_key(tmp_path_factory.mktemp(name))

    return Keys(rsa("ours"), dkim_keys.ed25519_key(), rsa("sender"), rsa("upstream"))


@pytest.fixture(scope="session")
def signing_dns(keys: Keys) -> Iterator[Dnsmasq]:
    records = [
        (f"mr202612._domainkey.{OUR_DOMAIN}", keys.ours_rsa.record),
        (f"mr202612e._domainkey.{OUR_DOMAIN}", keys.ours_ed25519.record),
        (f"s1._domainkey.{SENDER_DOMAIN}", keys.sender.record),
        (f"arc._domainkey.{UPSTREAM_DOMAIN}", keys.upstream.record),
        (SENDER_DOMAIN, "v=spf1 ip4:127.0.0.0/8 -all"),
    ]
    server = Dnsmasq(
        Zone(txt=[(n, txt_strings(t)) for n, t in records], local_domains=["sign.test"])
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dnsfunc(signing_dns: Dnsmasq) -> Callable[..., bytes | None]:
    """dkimpy's key look-up (its ``dnsfunc``), asking dnsmasq only."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [signing_dns.host]
    resolver.port = signing_dns.port

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(b"".join(record.strings) for record in answer)

    return get_txt


@pytest.fixture(scope="session")
def signing_rspamd(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, signing_dns: Dnsmasq
) -> Iterator[str]:
    """A real rspamd whose DNS is dnsmasq: its dkim and arc modules find our keys."""
    with running_rspamd(
        tmp_path_factory, pytestconfig, (signing_dns.host, signing_dns.port)
    ) as url:
        yield url
