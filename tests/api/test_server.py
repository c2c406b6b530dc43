"""The API as `mailroute api` serves it (app.api.server): client addresses behind a
trusted reverse proxy (TRUSTED_PROXIES), seen through the failed-authentication limit,
which keys on them. Real uvicorn on 127.0.0.1, real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.api.live import live_api
from tests.fakes import FakeResolver

FAILURES = 2  # failed authentications a minute per client address, all at once


async def guesses(base_url: str, forwarded_for: Sequence[str]) -> list[int]:
    """One wrong token per X-Forwarded-For value, in turn; the statuses."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        return [
            (
                await client.get(
                    "/v1/domains",
                    headers={"Authorization": "Bearer mr_guess", "X-Forwarded-For": value},
                )
            ).status_code
            for value in forwarded_for
        ]


Serve = Callable[[str], AbstractAsyncContextManager[str]]


@pytest.fixture
def serve(sessionmaker: async_sessionmaker[AsyncSession], resolver: FakeResolver) -> Serve:
    """Starts the API trusting ``trusted_proxies``; yields its base URL."""

    def start(trusted_proxies: str) -> AbstractAsyncContextManager[str]:
        return live_api(
            sessionmaker,
            resolver,
            api_auth_failure_limit=FAILURES,
            trusted_proxies=trusted_proxies,
        )

    return start


@pytest.mark.parametrize("trusted_proxies", ["", "192.0.2.1, 10.0.0.0/8"])
async def test_server_forged_forwarded_for_does_not_escape_failed_auth_limit(
    serve: Serve, trusted_proxies: str
) -> None:
    # 127.0.0.1 is not a trusted proxy: each request names another client, in vain.
    async with serve(trusted_proxies) as base_url:
        statuses = await guesses(base_url, [f"198.51.100.{n}" for n in range(1, 5)])

    assert statuses == [401] * FAILURES + [429] * 2


@pytest.mark.parametrize("trusted_proxies", ["127.0.0.1", "192.0.2.1,127.0.0.0/8"])
async def test_server_trusted_proxy_clients_are_limited_separately(
    serve: Serve, trusted_proxies: str
) -> None:
    async with serve(trusted_proxies) as base_url:
        first = await guesses(base_url, ["198.51.100.7"] * (FAILURES + 1))
        second = await guesses(base_url, ["198.51.100.8"] * (FAILURES + 1))

    assert first == [401] * FAILURES + [429]
    assert second == [401] * FAILURES + [429]


async def test_server_trusted_proxy_client_cannot_forge_what_the_proxy_appends(
    serve: Serve,
) -> None:
    # The proxy appends the address it saw; what the client wrote before it is not believed.
    async with serve("127.0.0.1") as base_url:
        statuses = await guesses(base_url, [f"203.0.113.{n}, 198.51.100.7" for n in range(1, 5)])

    assert statuses == [401] * FAILURES + [429] * 2


async def test_server_trusted_proxy_chain_names_the_client_before_it(serve: Serve) -> None:
    # Through two trusted proxies (127.0.0.1 and 10.0.0.5), the client is the last
    # address that is not a trusted proxy's.
    async with serve("127.0.0.1, 10.0.0.0/8") as base_url:
        first = await guesses(base_url, ["198.51.100.7, 10.0.0.5"] * (FAILURES + 1))
        second = await guesses(base_url, ["198.51.100.8, 10.0.0.5"])

    assert first == [401] * FAILURES + [429]
    assert second == [401]
