"""Every route of the app, read from its route table (so a new endpoint is covered without
touching this file), refuses each kind of bad credential with 401 and our error body.

Only the routes in PUBLIC answer without a token; adding a public route means adding it
here, on purpose.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.app import create_app
from app.api.context import ApiContext
from app.db.engine import session_scope
from app.db.models import Base
from app.services import tokens
from tests.fakes import FakeResolver

APP = create_app(ApiContext(sessionmaker=None, resolver=FakeResolver(), identity=None))  # type: ignore[arg-type]
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/v1/verify/{token}"),  # the link's secret is the credential
    ("POST", "/v1/verify/{token}"),
}
# FastAPI keeps included routers nested; iter_route_contexts (what its OpenAPI builder uses)
# yields every route with its full path, those left out of the schema too.
ROUTES = sorted(
    (method, route.path)
    for route in iter_route_contexts(APP.routes)
    for method in getattr(route, "methods", None) or ()
    if method != "HEAD"  # Starlette adds it to every GET
)
PROTECTED = [operation for operation in ROUTES if operation not in PUBLIC]

MISSING = {"error": {"code": "missing_token", "message": "send Authorization: Bearer <token>"}}
INVALID = {"error": {"code": "invalid_token", "message": "the token is unknown or revoked"}}
# Each kind of bad Authorization header, and the answer it must get on every route.
MALFORMED: dict[str, tuple[bytes, dict[str, dict[str, str]]]] = {
    "bearer without token": (b"Bearer", MISSING),
    "bearer and blanks": (b"Bearer    ", MISSING),
    "basic scheme": (b"Basic dXNlcjpwYXNz", MISSING),
    "token without scheme": (b"mr_abcdefghijklmnopqrstuvwxyz0123456789ABCD", MISSING),
    "two spaces": (b"Bearer  x", INVALID),
    "unknown token": (b"Bearer mr_abcdefghijklmnopqrstuvwxyz0123456789ABCD", INVALID),
    "non-ASCII bytes": (b"Bearer mr_\xff\xfe\xc3\xa9\x80", INVALID),
    "control characters": (b"Bearer mr_\x01\x7f\x1b[0m", INVALID),
    "huge header": (b"Bearer mr_" + b"A" * 64 * 1024, INVALID),
    "several tokens": (b"Bearer mr_one, Bearer mr_two", INVALID),
}


def concrete(path: str) -> str:
    # An id nothing has: DELETE /v1/tokens/1 would revoke the test's own token.
    return re.sub(r"\{(\w+)(:\w+)?\}", "999999", path)


def operation_id(operation: tuple[str, str]) -> str:
    return f"{operation[0]} {operation[1]}"


async def answers(
    client: httpx.AsyncClient, authorization: bytes | None
) -> dict[str, tuple[int, object, str | None]]:
    """What every protected route answers with this Authorization header (or none)."""
    headers = {} if authorization is None else {"Authorization": authorization}
    seen = {}
    for method, path in PROTECTED:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        response = await client.request(
            method,
            concrete(path),
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        seen[operation_id((method, path))] = (
            response.status_code,
            response.json(),
            response.headers.get("www-authenticate"),
        )
    return seen


def every_route(body: dict) -> dict[str, tuple[int, object, str | None]]:
    return {operation_id(operation): (401, body, "Bearer") for operation in PROTECTED}


# --- the route table ----------------------------------------------------------------------


def test_auth_battery_sees_the_api() -> None:
    # A guard against enumerating nothing: the table has the routes we know of.
    assert ("GET", "/v1/domains") in PROTECTED
    assert ("DELETE", "/v1/tokens/{token_id}") in PROTECTED
    assert len(PROTECTED) >= 25


def test_auth_battery_public_routes_all_exist() -> None:
    assert set(ROUTES) >= PUBLIC


def test_auth_battery_only_health_docs_and_verify_are_public() -> None:
    unprotected_prefixes = ("/v1/verify/",)
    outside_v1 = {op for op in ROUTES if not op[1].startswith("/v1/")}
    in_v1_public = {op for op in ROUTES if op[1].startswith(unprotected_prefixes)}

    assert outside_v1 | in_v1_public == PUBLIC


# --- every route, every kind of bad credential --------------------------------------------


async def test_auth_battery_no_header_is_401_everywhere(anonymous: httpx.AsyncClient) -> None:
    assert await answers(anonymous, None) == every_route(MISSING)


@pytest.mark.parametrize("kind", MALFORMED)
async def test_auth_battery_bad_header_is_401_everywhere(
    anonymous: httpx.AsyncClient, kind: str
) -> None:
    header, body = MALFORMED[kind]

    assert await answers(anonymous, header) == every_route(body)


async def test_auth_battery_revoked_token_is_401_everywhere(
    anonymous: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with session_scope(sessionmaker) as session:
        new = await tokens.create_token(session, "revoked")
        await tokens.revoke_token(session, new.token.id)

    assert await answers(anonymous, f"Bearer {new.secret}".encode()) == every_route(INVALID)


async def test_auth_battery_valid_token_with_a_suffix_is_401_everywhere(
    anonymous: httpx.AsyncClient, api_token: str
) -> None:
    assert await answers(anonymous, f"Bearer {api_token}x".encode()) == every_route(INVALID)


async def test_auth_battery_valid_token_passes_everywhere(
    anonymous: httpx.AsyncClient, api_token: str
) -> None:
    # The battery's requests are not refused for some other reason: with the token, none
    # of them is a 401.
    seen = await answers(anonymous, f"Bearer {api_token}".encode())

    assert {op: status for op, (status, _, _) in seen.items() if status == 401} == {}


# --- how the secret is kept ---------------------------------------------------------------


async def every_stored_value(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """Every value in every table, as text: what someone with a copy of the database has."""
    values = []
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            assert isinstance(table, Table)
            for row in await session.execute(select(table)):
                values.extend(repr(value) for value in row)
    return "\n".join(values)


async def test_auth_battery_token_secret_never_reaches_the_database(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/v1/tokens", json={"name": "laptop"})
    secret = response.json()["token"]
    await client.get("/v1/domains", headers={"Authorization": f"Bearer {secret}"})
    await client.get("/v1/domains", headers={"Authorization": f"Bearer {secret}x"})

    stored = await every_stored_value(sessionmaker)

    assert secret[:10] in stored  # the shown prefix is kept, to tell tokens apart
    assert secret not in stored
    assert secret[10:] not in stored


def test_auth_battery_token_lookup_is_by_a_unique_hash() -> None:
    # Looked up by the SHA-256 of what the client sent: the timing of the indexed lookup
    # depends on that hash, which the client cannot steer toward a stored one.
    column = Base.metadata.tables["api_tokens"].c.token_hash

    assert column.unique
