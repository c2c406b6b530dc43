"""Bearer-token authentication: every /v1 endpoint but the verification link needs a token."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest
from fastapi.routing import APIRoute

from app.api.app import create_app
from app.api.context import ApiContext
from app.api.routes import (
    activity,
    aliases,
    blocks,
    catch_all,
    destinations,
    domains,
    queue,
    route,
    server,
    tokens,
    verify,
)
from tests.fakes import FakeResolver

# The spec does not touch the context; an app built with placeholders is enough to read it.
SPEC_APP = create_app(ApiContext(sessionmaker=None, resolver=FakeResolver(), identity=None))  # type: ignore[arg-type]
SPEC = SPEC_APP.openapi()
OPERATIONS = [(method.upper(), path) for path, ops in SPEC["paths"].items() for method in ops]
PROTECTED = [
    (m, p) for m, p in OPERATIONS if p.startswith("/v1/") and not p.startswith("/v1/verify/")
]
V1_ROUTE_MODULES = (
    activity,
    aliases,
    blocks,
    catch_all,
    destinations,
    domains,
    queue,
    route,
    server,
    tokens,
    verify,
)
SAMPLE_PARAMETERS = {
    "name": "example.org",
    "domain": "example.org",
    "local_part": "shop",
    "destination_id": "1",
    "token_id": "1",
    "delivery_id": "1",
    "block_id": "1",
    "token": "some-token",
}

MISSING_TOKEN = {
    "error": {"code": "missing_token", "message": "send Authorization: Bearer <token>"}
}
INVALID_TOKEN = {"error": {"code": "invalid_token", "message": "the token is unknown or revoked"}}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMETERS[m.group(1)], path)


def operation_id(operation: tuple[str, str]) -> str:
    return f"{operation[0]} {operation[1]}"


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs) -> httpx.Response:
    if method in ("POST", "PUT", "PATCH"):
        kwargs.setdefault("json", {})
    return await client.request(method, concrete(path), **kwargs)


def assert_unauthorized(response: httpx.Response, body: dict) -> None:
    assert (response.status_code, response.json()) == (401, body)
    assert response.headers["www-authenticate"] == "Bearer"


# --- every endpoint -----------------------------------------------------------------------


def test_auth_spec_lists_every_route() -> None:
    # So that iterating over the spec's paths really visits every endpoint.
    routes = {
        (method, "/v1" + route.path.replace(":path}", "}"))
        for module in V1_ROUTE_MODULES
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    } | {("GET", "/healthz")}

    assert routes == set(OPERATIONS)
    assert ("POST", "/v1/verify/{token}") not in PROTECTED


@pytest.mark.parametrize("operation", PROTECTED, ids=operation_id)
async def test_auth_endpoint_without_token_is_401(
    anonymous: httpx.AsyncClient, operation: tuple[str, str]
) -> None:
    response = await call(anonymous, *operation)

    assert_unauthorized(response, MISSING_TOKEN)


@pytest.mark.parametrize("operation", PROTECTED, ids=operation_id)
async def test_auth_endpoint_with_unknown_token_is_401(
    anonymous: httpx.AsyncClient, operation: tuple[str, str]
) -> None:
    response = await call(anonymous, *operation, headers={"Authorization": "Bearer mr_unknown"})

    assert_unauthorized(response, INVALID_TOKEN)


@pytest.mark.parametrize("operation", PROTECTED, ids=operation_id)
def test_auth_endpoint_declares_bearer_security(operation: tuple[str, str]) -> None:
    method, path = operation

    assert SPEC["paths"][path][method.lower()].get("security") == [{"HTTPBearer": []}]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_auth_verify_link_needs_no_token(anonymous: httpx.AsyncClient, method: str) -> None:
    response = await anonymous.request(method, "/v1/verify/some-token")

    assert response.status_code == 404  # an unknown link, not a missing token
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize("path", ["/healthz", "/docs", "/redoc", "/openapi.json"])
async def test_auth_public_page_needs_no_token(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)

    assert response.status_code == 200


async def test_auth_healthz_answers_ok(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")

    assert response.json() == {"status": "ok"}


# --- the Authorization header -------------------------------------------------------------


async def test_auth_missing_header_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/domains")

    assert_unauthorized(response, MISSING_TOKEN)


async def test_auth_basic_scheme_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/domains", headers={"Authorization": "Basic x"})

    assert_unauthorized(response, MISSING_TOKEN)


async def test_auth_basic_scheme_with_valid_secret_is_401(
    anonymous: httpx.AsyncClient, api_token: str
) -> None:
    response = await anonymous.get("/v1/domains", headers={"Authorization": f"Basic {api_token}"})

    assert_unauthorized(response, MISSING_TOKEN)


async def test_auth_bearer_without_token_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/domains", headers={"Authorization": "Bearer"})

    assert_unauthorized(response, MISSING_TOKEN)


async def test_auth_bearer_with_blank_token_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/domains", headers={"Authorization": "Bearer    "})

    assert_unauthorized(response, MISSING_TOKEN)


async def test_auth_unknown_token_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/domains", headers={"Authorization": "Bearer mr_nope"})

    assert_unauthorized(response, INVALID_TOKEN)


async def test_auth_token_hash_is_not_a_credential(
    anonymous: httpx.AsyncClient, api_token: str
) -> None:
    digest = hashlib.sha256(api_token.encode()).hexdigest()

    response = await anonymous.get("/v1/domains", headers={"Authorization": f"Bearer {digest}"})

    assert_unauthorized(response, INVALID_TOKEN)


async def test_auth_token_prefix_is_not_a_credential(
    anonymous: httpx.AsyncClient, api_token: str
) -> None:
    response = await anonymous.get(
        "/v1/domains", headers={"Authorization": f"Bearer {api_token[:10]}"}
    )

    assert_unauthorized(response, INVALID_TOKEN)


async def test_auth_valid_token_is_accepted(anonymous: httpx.AsyncClient, api_token: str) -> None:
    response = await anonymous.get("/v1/domains", headers={"Authorization": f"Bearer {api_token}"})

    assert response.status_code == 200
    assert response.json() == []


async def test_auth_scheme_is_case_insensitive(
    anonymous: httpx.AsyncClient, api_token: str
) -> None:
    # RFC 9110 11.1: the authentication scheme is case-insensitive.
    response = await anonymous.get("/v1/domains", headers={"Authorization": f"bearer {api_token}"})

    assert response.status_code == 200


async def test_auth_is_checked_before_body_validation(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/v1/domains", json={"name": 5, "extra": True})

    assert_unauthorized(response, MISSING_TOKEN)


async def test_auth_is_checked_before_malformed_json(anonymous: httpx.AsyncClient) -> None:
    # An anonymous caller learns nothing about an endpoint, not even how it parses.
    response = await anonymous.post(
        "/v1/domains", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert_unauthorized(response, MISSING_TOKEN)


async def test_auth_refused_request_changes_nothing(
    anonymous: httpx.AsyncClient, api_token: str
) -> None:
    await anonymous.post("/v1/domains", json={"name": "example.org"})

    response = await anonymous.get("/v1/domains", headers={"Authorization": f"Bearer {api_token}"})

    assert response.json() == []
