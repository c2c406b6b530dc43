"""GET /v1/server/dns checked live against a real DNS server (dnsmasq)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.context import ApiContext
from app.services import signing_keys
from app.signing.keys import SigningKey
from tests.api.dnsmasq_client import dnsmasq_client
from tests.conftest import HOSTNAME
from tests.peers.dkim_keys import txt_strings
from tests.peers.dnsmasq import Dnsmasq, Zone

pytestmark = pytest.mark.dnsmasq


@pytest.fixture
async def keys(sessionmaker: async_sessionmaker[AsyncSession]) -> list[SigningKey]:
    async with sessionmaker() as session, session.begin():
        return await signing_keys.active_keys(session, now=datetime.now(UTC))


@pytest.fixture
def dnsmasq_zone(keys: list[SigningKey]) -> Zone:
    rsa = keys[0]  # the Ed25519 key's record is left unpublished
    return Zone(
        local_domains=["mailroute.example", "elsewhere.example"],
        txt=[
            (f"{rsa.selector}._domainkey.{HOSTNAME}", txt_strings(rsa.record())),
            (HOSTNAME, "v=spf1 a -all"),
        ],
        hosts=[(HOSTNAME, "127.0.0.25")],
    )


@pytest.fixture
def signing_domain() -> str | None:
    return None  # the host name's


@pytest.fixture
async def live_client(
    api_context: ApiContext, dnsmasq: Dnsmasq, api_token: str, signing_domain: str | None
) -> AsyncIterator[httpx.AsyncClient]:
    async with dnsmasq_client(
        api_context, dnsmasq, api_token, signing_domain=signing_domain
    ) as client:
        yield client


async def test_server_dns_live(live_client: httpx.AsyncClient, keys: list[SigningKey]) -> None:
    response = await live_client.get("/v1/server/dns")
    assert response.status_code == 200, response.text
    rsa, ed = keys
    assert [(r["type"], r["name"], r["value"], r["in_place"]) for r in response.json()] == [
        ("TXT", f"{rsa.selector}._domainkey.{HOSTNAME}", rsa.record(), True),
        ("TXT", f"{ed.selector}._domainkey.{HOSTNAME}", ed.record(), False),
        ("TXT", HOSTNAME, "v=spf1 a -all", True),
        ("A", HOSTNAME, "127.0.0.25", True),
    ]


@pytest.mark.parametrize("signing_domain", ["elsewhere.example", "outside.example"])
async def test_server_dns_live_other_signing_domain(
    live_client: httpx.AsyncClient, keys: list[SigningKey], signing_domain: str
) -> None:
    # The keys' records move to the signing domain: unpublished there (False), or
    # outside dnsmasq's zones, where it refuses to answer (None: cannot tell).
    records = (await live_client.get("/v1/server/dns")).json()
    expected = False if signing_domain == "elsewhere.example" else None
    assert [(r["name"], r["in_place"]) for r in records[:2]] == [
        (f"{key.selector}._domainkey.{signing_domain}", expected) for key in keys
    ]
