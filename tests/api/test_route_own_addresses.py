"""GET /v1/route for the server's own addresses answers as RCPT does: an SRS bounce
address is forwarded to its original sender for the null sender only, a forged one is
refused, and postmaster goes to the operator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.context import ApiContext
from app.routing.srs import Srs
from app.services.destinations import MailIdentity
from tests.conftest import HOSTNAME
from tests.fakes import FakeResolver

SRS = Srs("test-srs-secret-0123456789", HOSTNAME)
OPERATOR = "ops@operator.example"


@pytest.fixture
def api_context(
    sessionmaker: async_sessionmaker[AsyncSession], resolver: FakeResolver, identity: MailIdentity
) -> ApiContext:
    return ApiContext(
        sessionmaker=sessionmaker,
        resolver=resolver,
        identity=identity,
        srs=SRS,
        postmaster=OPERATOR,
    )


async def route(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/route", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_route_srs_address_returns_to_the_original_sender(client: httpx.AsyncClient) -> None:
    answer = await route(client, address=SRS.forward("alice@sender.example"))
    assert (answer["outcome"], answer["matched_by"], answer["destinations"]) == (
        "forward",
        "srs",
        ["alice@sender.example"],
    )


async def test_route_srs_address_from_a_sender_is_refused(client: httpx.AsyncClient) -> None:
    genuine = SRS.forward("alice@sender.example")
    answer = await route(client, address=genuine, sender="spammer@spam.example")
    assert (answer["outcome"], answer["refusal"]) == ("refuse", "srs_not_bounce")


async def test_route_forged_srs_address_is_refused(client: httpx.AsyncClient) -> None:
    genuine = SRS.forward("alice@sender.example")
    real = genuine.split("=")[1]
    answer = await route(client, address=genuine.replace(f"={real}=", f"={real[:1]}=", 1))
    assert (answer["outcome"], answer["refusal"]) == ("refuse", "bad_srs")


async def test_route_postmaster_goes_to_the_operator(client: httpx.AsyncClient) -> None:
    for address in ("postmaster", f"PostMaster@{HOSTNAME}"):
        answer = await route(client, address=address)
        assert (answer["outcome"], answer["matched_by"], answer["destinations"]) == (
            "forward",
            "postmaster",
            [OPERATOR],
        )
