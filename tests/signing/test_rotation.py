"""A key rotation (``mailroute dkim rotate`` calls services.signing_keys.rotate): mail
signed before it and mail signed after it both verify while the old key's record is
still published, as ``published`` lists it for the grace period."""

from __future__ import annotations

from datetime import timedelta

import dkim
import dns.resolver
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.types import utcnow
from app.runtime.signing import LiveSigning
from app.services import signing_keys
from app.services.signing_keys import KeySource
from tests.peers.dkim_keys import txt_strings
from tests.peers.dnsmasq import Dnsmasq, Zone

DOMAIN = "rotate.sign.test"
MESSAGE = b"From: <alice@sender.example>\r\nTo: <me@example.org>\r\nSubject: r\r\n\r\nBody.\r\n"


async def test_rotation_keeps_both_signatures_verifying(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    signing = LiveSigning(
        sessionmaker, KeySource(), domain=DOMAIN, authserv_id="mx." + DOMAIN, dkim=True, refresh=0
    )
    before = await signing.fields(MESSAGE, checked=False) + MESSAGE
    async with session_scope(sessionmaker) as session:
        fresh = await signing_keys.rotate(session, utcnow())
    after = await signing.fields(MESSAGE, checked=False) + MESSAGE
    async with session_scope(sessionmaker) as session:
        published = await signing_keys.published(session, utcnow(), timedelta(days=7))
    assert {k.selector for k in fresh} < {k.selector for k in published}
    assert len(published) == 4  # the RSA and Ed25519 keys, old and new

    zone = Zone(
        txt=[(f"{k.selector}._domainkey.{DOMAIN}", txt_strings(k.record())) for k in published],
        local_domains=[DOMAIN],
    )
    server = Dnsmasq(zone)
    server.start()
    try:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [server.host], server.port

        def lookup(name: bytes, timeout: float = 5) -> bytes:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
            return b"".join(b"".join(record.strings) for record in answer)

        selectors = []
        for signed in (before, after):
            verifier = dkim.DKIM(signed)
            assert verifier.verify(0, lookup) and verifier.verify(1, lookup)
            selectors.append(verifier.selector)
    finally:
        server.stop()
    assert selectors[0] != selectors[1]  # the second is signed with the new key
