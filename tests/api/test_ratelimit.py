"""Rate limits: per token (429 with Retry-After), and failed authentications per address.

Time is a fake clock handed to the app, so a test moves it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.app import create_app
from app.api.context import ApiContext
from app.db.engine import session_scope
from app.ratelimit import Rate, RateLimiter
from app.services import tokens

TOKEN_RATE = Rate(per_minute=60, burst=3)  # one a second, three at once
FAILURE_RATE = Rate(per_minute=6, burst=2)  # one every ten seconds, two at once


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def limited(api_context: ApiContext, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with small limits and the fake clock."""
    context = dataclasses.replace(
        api_context, token_rate=TOKEN_RATE, auth_failure_rate=FAILURE_RATE, clock=clock
    )
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://mailroute.test") as client:
        yield client


async def new_secret(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> str:
    async with session_scope(sessionmaker) as session:
        return (await tokens.create_token(session, name)).secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def spend(client: httpx.AsyncClient, secret: str, n: int) -> list[int]:
    return [(await client.get("/v1/domains", headers=bearer(secret))).status_code for _ in range(n)]


def assert_rate_limited(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429
    assert response.headers["retry-after"] == str(retry_after)
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "rate_limited"
    assert f"retry in {retry_after} s" in body["error"]["message"]


# --- the bucket ---------------------------------------------------------------------------


def test_rate_limiter_allows_the_burst_then_refuses(clock: FakeClock) -> None:
    limiter = RateLimiter(TOKEN_RATE, clock=clock)

    answers = [limiter.take("k") for _ in range(4)]

    assert answers == [None, None, None, 1]


def test_rate_limiter_refills_at_its_rate(clock: FakeClock) -> None:
    limiter = RateLimiter(Rate(per_minute=6, burst=1), clock=clock)
    limiter.take("k")

    clock.advance(9.5)
    early = limiter.take("k")
    clock.advance(0.5)
    on_time = limiter.take("k")

    assert (early, on_time) == (1, None)


def test_rate_limiter_retry_after_rounds_up_to_whole_seconds(clock: FakeClock) -> None:
    limiter = RateLimiter(Rate(per_minute=6, burst=1), clock=clock)
    limiter.take("k")
    clock.advance(2.5)

    assert limiter.take("k") == 8  # 7.5 s to go


def test_rate_limiter_refusal_takes_nothing(clock: FakeClock) -> None:
    limiter = RateLimiter(Rate(per_minute=60, burst=1), clock=clock)
    limiter.take("k")
    for _ in range(5):
        limiter.take("k")

    clock.advance(1)

    assert limiter.take("k") is None


def test_rate_limiter_keys_are_independent(clock: FakeClock) -> None:
    limiter = RateLimiter(Rate(per_minute=60, burst=1), clock=clock)
    limiter.take("a")

    assert limiter.take("b") is None


def test_rate_limiter_give_back_returns_what_was_taken(clock: FakeClock) -> None:
    limiter = RateLimiter(Rate(per_minute=60, burst=1), clock=clock)
    limiter.take("k")
    limiter.give_back("k")

    assert [limiter.take("k"), limiter.take("k")] == [None, 1]


def test_rate_limiter_give_back_never_exceeds_the_burst(clock: FakeClock) -> None:
    limiter = RateLimiter(Rate(per_minute=60, burst=1), clock=clock)
    limiter.give_back("k")

    assert [limiter.take("k"), limiter.take("k")] == [None, 1]


def test_rate_limiter_forgets_idle_keys_past_its_bound(clock: FakeClock) -> None:
    limiter = RateLimiter(Rate(per_minute=60, burst=1), clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limiter.take(key)
    clock.advance(5)  # all three full again: idle
    limiter.take("d")

    assert len(limiter._buckets) == 1


# --- per token ----------------------------------------------------------------------------


async def test_ratelimit_token_past_its_burst_is_429(
    limited: httpx.AsyncClient, api_token: str
) -> None:
    statuses = await spend(limited, api_token, 3)

    response = await limited.get("/v1/domains", headers=bearer(api_token))

    assert statuses == [200, 200, 200]
    assert_rate_limited(response, 1)


async def test_ratelimit_applies_to_every_method(
    limited: httpx.AsyncClient, api_token: str
) -> None:
    await spend(limited, api_token, 3)

    response = await limited.post(
        "/v1/domains", json={"name": "example.org"}, headers=bearer(api_token)
    )

    assert_rate_limited(response, 1)


async def test_ratelimit_refused_request_changes_nothing(
    limited: httpx.AsyncClient, api_token: str, clock: FakeClock
) -> None:
    await spend(limited, api_token, 3)
    await limited.post("/v1/domains", json={"name": "example.org"}, headers=bearer(api_token))
    clock.advance(60)

    response = await limited.get("/v1/domains", headers=bearer(api_token))

    assert response.json() == []


async def test_ratelimit_other_token_is_unaffected(
    limited: httpx.AsyncClient, api_token: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    other = await new_secret(sessionmaker, "other")
    await spend(limited, api_token, 4)

    assert await spend(limited, other, 3) == [200, 200, 200]


async def test_ratelimit_allows_again_after_waiting(
    limited: httpx.AsyncClient, api_token: str, clock: FakeClock
) -> None:
    await spend(limited, api_token, 4)

    clock.advance(1)

    assert await spend(limited, api_token, 2) == [200, 429]


async def test_ratelimit_full_burst_again_after_idle(
    limited: httpx.AsyncClient, api_token: str, clock: FakeClock
) -> None:
    await spend(limited, api_token, 4)

    clock.advance(60)

    assert await spend(limited, api_token, 4) == [200, 200, 200, 429]


async def test_ratelimit_off_by_default(client: httpx.AsyncClient) -> None:
    statuses = [(await client.get("/v1/domains")).status_code for _ in range(20)]

    assert set(statuses) == {200}


async def test_ratelimit_does_not_limit_public_pages(limited: httpx.AsyncClient) -> None:
    statuses = [(await limited.get("/healthz")).status_code for _ in range(10)]

    assert set(statuses) == {200}


# --- failed authentications per address ---------------------------------------------------


async def test_ratelimit_failed_auth_past_burst_is_429(limited: httpx.AsyncClient) -> None:
    statuses = [
        (await limited.get("/v1/domains", headers=bearer("mr_guess"))).status_code for _ in range(2)
    ]

    response = await limited.get("/v1/domains", headers=bearer("mr_guess"))

    assert statuses == [401, 401]
    assert_rate_limited(response, 10)


async def test_ratelimit_concurrent_guesses_share_the_burst(limited: httpx.AsyncClient) -> None:
    # All sent at once: each is counted before its lookup, not after it failed.
    responses = await asyncio.gather(
        *(limited.get("/v1/domains", headers=bearer(f"mr_guess{n}")) for n in range(10))
    )

    assert sorted(r.status_code for r in responses) == [401] * 2 + [429] * 8


async def test_ratelimit_failed_auth_limit_skips_the_token_lookup(
    limited: httpx.AsyncClient, api_token: str
) -> None:
    # Once an address is limited, even a valid token waits: checking it would be a lookup.
    for _ in range(2):
        await limited.get("/v1/domains", headers=bearer("mr_guess"))

    response = await limited.get("/v1/domains", headers=bearer(api_token))

    assert response.status_code == 429


async def test_ratelimit_failed_auth_allows_again_after_waiting(
    limited: httpx.AsyncClient, api_token: str, clock: FakeClock
) -> None:
    for _ in range(3):
        await limited.get("/v1/domains", headers=bearer("mr_guess"))

    clock.advance(10)

    assert (await limited.get("/v1/domains", headers=bearer(api_token))).status_code == 200


async def test_ratelimit_successful_auth_is_not_a_failure(
    limited: httpx.AsyncClient, api_token: str, clock: FakeClock
) -> None:
    for _ in range(3):
        await spend(limited, api_token, 3)
        clock.advance(3)

    response = await limited.get("/v1/domains", headers=bearer("mr_guess"))

    assert response.status_code == 401


async def test_ratelimit_missing_header_is_not_counted(limited: httpx.AsyncClient) -> None:
    # No token, no lookup: a plain 401 each time, nothing to protect.
    statuses = [(await limited.get("/v1/domains")).status_code for _ in range(5)]

    assert statuses == [401] * 5


def test_ratelimit_429_is_documented() -> None:
    spec = create_app(
        ApiContext(sessionmaker=None, resolver=None, identity=None)  # type: ignore[arg-type]
    ).openapi()
    response = spec["paths"]["/v1/domains"]["get"]["responses"]["429"]

    assert response["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorPublic"
    }
    assert response["headers"]["Retry-After"]["schema"] == {"type": "integer"}
