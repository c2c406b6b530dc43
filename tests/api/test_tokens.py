"""/v1/tokens: creating, listing and revoking API tokens; secrets shown once, stored hashed."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import ApiToken
from tests.matchers import Recent

INVALID_TOKEN = {"error": {"code": "invalid_token", "message": "the token is unknown or revoked"}}


async def create_token(client: httpx.AsyncClient, name: str = "laptop") -> dict:
    response = await client.post("/v1/tokens", json={"name": name})
    assert response.status_code == 201, response.text
    body: dict = response.json()
    return body


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def stored_tokens(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ApiToken]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(ApiToken).order_by(ApiToken.id)))


# --- POST /v1/tokens ----------------------------------------------------------------------


async def test_create_token_returns_secret_once(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tokens", json={"name": "laptop"})

    assert response.status_code == 201
    body = response.json()
    assert body == {
        "id": body["id"],
        "name": "laptop",
        "prefix": body["token"][:10],
        "created_at": Recent(),
        "last_used_at": None,
        "revoked_at": None,
        "token": body["token"],
    }
    assert body["token"].startswith("mr_")
    assert len(body["token"]) >= 40


async def test_create_token_secret_authenticates(client: httpx.AsyncClient) -> None:
    secret = (await create_token(client))["token"]

    response = await client.get("/v1/domains", headers=bearer(secret))

    assert response.status_code == 200


async def test_create_token_secrets_differ(client: httpx.AsyncClient) -> None:
    first = await create_token(client, "one")
    second = await create_token(client, "two")

    assert first["token"] != second["token"]
    assert first["id"] != second["id"]


async def test_create_token_needs_a_name(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tokens", json={"name": ""})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_create_token_refuses_name_over_100(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tokens", json={"name": "x" * 101})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["location"] == "body.name"


async def test_create_token_refuses_chosen_secret(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/tokens", json={"name": "laptop", "token": "mr_mine"})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["location"] == "body.token"


# --- GET /v1/tokens -----------------------------------------------------------------------


async def test_list_tokens_shows_the_callers_token(
    client: httpx.AsyncClient, api_token: str
) -> None:
    response = await client.get("/v1/tokens")

    assert response.status_code == 200
    assert response.json() == [
        {
            "id": response.json()[0]["id"],
            "name": "tests",
            "prefix": api_token[:10],
            "created_at": Recent(),
            "last_used_at": Recent(),  # this very request used it
            "revoked_at": None,
        }
    ]


async def test_list_tokens_never_shows_secrets(client: httpx.AsyncClient, api_token: str) -> None:
    created = await create_token(client)

    response = await client.get("/v1/tokens")

    assert all("token" not in item for item in response.json())
    assert created["token"] not in response.text
    assert api_token not in response.text


async def test_list_tokens_orders_by_creation(client: httpx.AsyncClient) -> None:
    await create_token(client, "zeta")
    await create_token(client, "alpha")

    response = await client.get("/v1/tokens")

    assert [t["name"] for t in response.json()] == ["tests", "zeta", "alpha"]


async def test_list_tokens_shows_new_token_without_use(client: httpx.AsyncClient) -> None:
    created = await create_token(client)

    response = await client.get("/v1/tokens")

    listed = {k: v for k, v in created.items() if k != "token"}
    assert response.json()[1] == listed


# --- DELETE /v1/tokens/{id} ---------------------------------------------------------------


async def test_revoke_token_returns_it_revoked(client: httpx.AsyncClient) -> None:
    created = await create_token(client)

    response = await client.delete(f"/v1/tokens/{created['id']}")

    assert response.status_code == 200
    listed = {k: v for k, v in created.items() if k != "token"}
    assert response.json() == {**listed, "revoked_at": Recent()}


async def test_revoke_token_keeps_it_listed(client: httpx.AsyncClient) -> None:
    created = await create_token(client)
    revoked = (await client.delete(f"/v1/tokens/{created['id']}")).json()

    response = await client.get("/v1/tokens")

    assert response.json()[1] == revoked


async def test_revoke_token_refuses_its_secret(client: httpx.AsyncClient) -> None:
    created = await create_token(client)
    await client.delete(f"/v1/tokens/{created['id']}")

    response = await client.get("/v1/domains", headers=bearer(created["token"]))

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
    assert response.headers["www-authenticate"] == "Bearer"


async def test_revoke_token_twice_keeps_first_revocation_time(
    client: httpx.AsyncClient,
) -> None:
    created = await create_token(client)
    first = await client.delete(f"/v1/tokens/{created['id']}")

    second = await client.delete(f"/v1/tokens/{created['id']}")

    assert second.status_code == 200
    assert second.json() == first.json()


async def test_revoke_token_leaves_other_tokens_working(client: httpx.AsyncClient) -> None:
    kept = await create_token(client, "kept")
    revoked = await create_token(client, "revoked")
    await client.delete(f"/v1/tokens/{revoked['id']}")

    response = await client.get("/v1/tokens", headers=bearer(kept["token"]))

    assert response.status_code == 200


async def test_revoke_token_own_token_takes_effect_at_once(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    [own] = await stored_tokens(sessionmaker)
    revoked = await client.delete(f"/v1/tokens/{own.id}")
    assert revoked.status_code == 200

    response = await client.get("/v1/tokens")

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


async def test_revoke_token_unknown_is_404(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/tokens/999")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "token_not_found", "message": "no token with id 999"}
    }


# --- storage ------------------------------------------------------------------------------


async def test_token_stored_as_sha256_of_secret(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await create_token(client)

    row = next(t for t in await stored_tokens(sessionmaker) if t.id == created["id"])

    assert row.token_hash == hashlib.sha256(created["token"].encode()).hexdigest()


async def test_token_row_does_not_contain_secret(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await create_token(client)

    row = next(t for t in await stored_tokens(sessionmaker) if t.id == created["id"])

    columns = [getattr(row, c.key) for c in ApiToken.__table__.columns]
    assert not any(created["token"] in str(value) for value in columns)
    assert row.prefix == created["token"][:10]


async def test_token_use_records_last_used_at(client: httpx.AsyncClient) -> None:
    created = await create_token(client)
    await client.get("/v1/domains", headers=bearer(created["token"]))

    response = await client.get("/v1/tokens")

    assert response.json()[1]["last_used_at"] == Recent()
