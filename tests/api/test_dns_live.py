"""GET /v1/domains/{name}/dns checked live against a real DNS server (dnsmasq)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from app.api.context import ApiContext
from app.routing.networks import DeliveryNetworks
from tests.api.dnsmasq_client import dnsmasq_client
from tests.conftest import HOSTNAME
from tests.peers.dnsmasq import Dnsmasq, Zone

pytestmark = pytest.mark.dnsmasq


@pytest.fixture
def dnsmasq_zone() -> Zone:
    return Zone(
        local_domains=["published.example", "bare.example", "nomail.example", "loops.example"],
        mx=[
            ("published.example", HOSTNAME, 10),
            ("nomail.example", "", 0),
            ("loops.example", "localhost.loops.example", 10),
        ],
        txt=[
            ("published.example", "v=spf1 mx include:_spf.other.example ~all"),
            ("_dmarc.published.example", "v=DMARC1; p=quarantine"),
        ],
        hosts=[("bare.example", "127.0.0.9"), ("localhost.loops.example", "127.0.0.1")],
    )


@pytest.fixture
def delivery_networks() -> DeliveryNetworks:
    """dnsmasq's addresses are on loopback, where delivery goes only when allowed."""
    return DeliveryNetworks(allowed=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.fixture
async def live_client(
    api_context: ApiContext,
    dnsmasq: Dnsmasq,
    api_token: str,
    delivery_networks: DeliveryNetworks,
) -> AsyncIterator[httpx.AsyncClient]:
    async with dnsmasq_client(
        api_context, dnsmasq, api_token, delivery_networks=delivery_networks
    ) as client:
        yield client


async def _records(client: httpx.AsyncClient, domain: str) -> dict[str, bool | None]:
    assert (await client.post("/v1/domains", json={"name": domain})).status_code == 201
    response = await client.get(f"/v1/domains/{domain}/dns")
    assert response.status_code == 200, response.text
    return {f"{r['type']} {r['name']}": r["in_place"] for r in response.json()[:3]}


async def test_dns_records_in_place_when_published(live_client: httpx.AsyncClient) -> None:
    assert await _records(live_client, "published.example") == {
        "MX published.example": True,
        "TXT published.example": True,
        "TXT _dmarc.published.example": True,
    }


async def test_dns_records_missing_when_not_published(live_client: httpx.AsyncClient) -> None:
    assert await _records(live_client, "bare.example") == {
        "MX bare.example": False,
        "TXT bare.example": False,
        "TXT _dmarc.bare.example": False,
    }


async def test_dns_records_unknown_when_lookup_fails(live_client: httpx.AsyncClient) -> None:
    # Outside dnsmasq's zones the answer is REFUSED: the check cannot tell, so null.
    assert await _records(live_client, "elsewhere.example") == {
        "MX elsewhere.example": None,
        "TXT elsewhere.example": None,
        "TXT _dmarc.elsewhere.example": None,
    }


async def test_destination_with_null_mx_refused_live(live_client: httpx.AsyncClient) -> None:
    response = await live_client.post("/v1/destinations", json={"email": "me@nomail.example"})
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "undeliverable_domain",
            "message": "nomail.example publishes a null MX: it accepts no mail",
        }
    }


async def test_destination_with_address_only_accepted_live(live_client: httpx.AsyncClient) -> None:
    # No MX but an A record: mail goes to the address (RFC 5321 5.1), so it is accepted.
    response = await live_client.post("/v1/destinations", json={"email": "me@bare.example"})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"


# The default policy (no network allowed) overrides the fixture's.
@pytest.mark.parametrize("delivery_networks", [DeliveryNetworks()])
@pytest.mark.parametrize("email", ["me@bare.example", "me@loops.example"])
async def test_destination_on_loopback_refused_live_by_default(
    live_client: httpx.AsyncClient, email: str
) -> None:
    # bare.example: A 127.0.0.9, no MX; loops.example: MX pointing at 127.0.0.1.
    response = await live_client.post("/v1/destinations", json={"email": email})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "undeliverable_domain"
    domain = email.partition("@")[2]
    assert error["message"].startswith(
        f"the mail hosts of {domain} resolve only to internal addresses"
    )
    assert (await live_client.get("/v1/destinations")).json() == []
