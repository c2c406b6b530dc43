"""How the API answers bad requests: always ``{"error": {"code", "message"}}`` (plus
``details`` for validation errors), never a 500, whatever the body holds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.api.app import create_app
from app.api.context import ApiContext

JSON = {"Content-Type": "application/json"}
MALFORMED_JSON = {
    "error": {"code": "malformed_json", "message": "the request body is not valid JSON"}
}
UNSUPPORTED_MEDIA_TYPE = {
    "error": {
        "code": "unsupported_media_type",
        "message": "send the request body as JSON, with Content-Type: application/json",
    }
}


@pytest.fixture
async def raw(api_context: ApiContext, api_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a token that receives the app's 500 answers instead of its exceptions,
    so that a test sees exactly what a caller would."""
    transport = httpx.ASGITransport(app=create_app(api_context), raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://mailroute.test",
        headers={"Authorization": f"Bearer {api_token}"},
    ) as client:
        yield client


def validation_error(location: str, message: str) -> dict:
    return {
        "error": {
            "code": "validation_error",
            "message": f"{location}: {message}",
            "details": [{"location": location, "message": message}],
        }
    }


def assert_error_shape(response: httpx.Response) -> None:
    """The one shape of every error answer: nothing more, nothing less."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    expected_keys = {"code", "message"}
    if error.get("code") == "validation_error":
        expected_keys.add("details")
        assert all(set(d) == {"location", "message"} for d in error["details"])
    assert set(error) == expected_keys
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]


# --- malformed bodies ---------------------------------------------------------------------


async def test_errors_malformed_json_is_400(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", content=b'{"name": "example.org"', headers=JSON)

    assert response.status_code == 400
    assert response.json() == MALFORMED_JSON


async def test_errors_json_with_trailing_garbage_is_400(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", content=b'{"name": "example.org"} x', headers=JSON)

    assert response.status_code == 400
    assert response.json() == MALFORMED_JSON


async def test_errors_invalid_utf8_body_is_malformed_json(raw: httpx.AsyncClient) -> None:
    # RFC 8259 8.1: JSON exchanged between systems is UTF-8; anything else is not JSON.
    response = await raw.post("/v1/domains", content=b'{"name": "\xff.example"}', headers=JSON)

    assert response.status_code == 400
    assert response.json() == MALFORMED_JSON


async def test_errors_empty_body_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", content=b"", headers=JSON)

    assert response.status_code == 422
    assert response.json() == validation_error("body", "Field required")


async def test_errors_body_not_an_object_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", json=["example.org"])

    assert response.status_code == 422
    assert response.json() == validation_error(
        "body", "Input should be a valid dictionary or object to extract fields from"
    )


# --- wrong values -------------------------------------------------------------------------


async def test_errors_number_for_name_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", json={"name": 5})

    assert response.status_code == 422
    assert response.json() == validation_error("body.name", "Input should be a valid string")


async def test_errors_string_for_boolean_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", json={"name": "example.org", "subaddressing": "true"})

    assert response.status_code == 422
    assert response.json() == validation_error(
        "body.subaddressing", "Input should be a valid boolean"
    )


async def test_errors_number_for_boolean_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", json={"name": "example.org", "subaddressing": 1})

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["location"] == "body.subaddressing"


async def test_errors_null_for_required_field_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/destinations", json={"email": None})

    assert response.status_code == 422
    assert response.json() == validation_error("body.email", "Input should be a valid string")


async def test_errors_every_problem_is_in_details(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", json={"name": 5, "subaddressing": "yes"})

    assert response.status_code == 422
    assert [d["location"] for d in response.json()["error"]["details"]] == [
        "body.name",
        "body.subaddressing",
    ]


async def test_errors_unknown_field_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", json={"name": "example.org", "catch_all": True})

    assert response.status_code == 422
    assert response.json() == validation_error("body.catch_all", "Extra inputs are not permitted")


async def test_errors_unknown_field_creates_nothing(raw: httpx.AsyncClient) -> None:
    await raw.post("/v1/domains", json={"name": "example.org", "catch_all": True})

    response = await raw.get("/v1/domains")

    assert response.json() == []


async def test_errors_overlong_domain_name_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", json={"name": "a" * 10_000 + ".example"})

    assert response.status_code == 422
    assert response.json() == validation_error(
        "body.name", "String should have at most 300 characters"
    )


async def test_errors_overlong_email_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/destinations", json={"email": "a" * 10_000 + "@inbox.example"})

    assert response.status_code == 422
    assert response.json() == validation_error(
        "body.email", "String should have at most 320 characters"
    )


async def test_errors_overlong_token_name_is_422(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/tokens", json={"name": "t" * 10_000})

    assert response.status_code == 422
    assert response.json() == validation_error(
        "body.name", "String should have at most 100 characters"
    )


ODD_TEXTS = {
    "nul": "a\x00b",
    "newline": "a\nb",
    "escape": "a\x1bb",
    "delete": "a\x7fb",
    "emoji": "😀",
    "rtl_override": "a\u202eb",
    "zero_width": "a\u200bb",
    "combining": "e\u0301",
    "non_ascii": "ünïcødé",
    "cjk": "例え",
}
ODD_BODIES = [
    pytest.param(path, {field: template.format(text)}, id=f"{path}-{name}")
    for path, field, template in [
        ("/v1/domains", "name", "{}.example"),
        ("/v1/destinations", "email", "{}@inbox.example"),
        ("/v1/destinations", "email", "me@{}.example"),
        ("/v1/tokens", "name", "{}"),
    ]
    for name, text in ODD_TEXTS.items()
]


@pytest.mark.parametrize(("path", "body"), ODD_BODIES)
async def test_errors_odd_text_is_never_a_server_error(
    raw: httpx.AsyncClient, path: str, body: dict
) -> None:
    response = await raw.post(path, json=body)

    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error_shape(response)


@pytest.mark.parametrize(
    ("path", "field", "template"),
    [
        ("/v1/domains", "name", "{}.example"),
        ("/v1/destinations", "email", "{}@inbox.example"),
        ("/v1/tokens", "name", "{}"),
    ],
)
async def test_errors_control_characters_are_422(
    raw: httpx.AsyncClient, path: str, field: str, template: str
) -> None:
    for char in ("\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f"):
        response = await raw.post(path, json={field: template.format(f"a{char}b")})

        assert response.status_code == 422, (repr(char), response.text)
        assert_error_shape(response)


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/v1/domains", b'{"name": "\\ud800.example"}'),
        ("/v1/destinations", b'{"email": "\\udfff@inbox.example"}'),
        ("/v1/tokens", b'{"name": "\\ud83d"}'),
    ],
    ids=["domain", "destination", "token"],
)
async def test_errors_lone_surrogate_is_422(
    raw: httpx.AsyncClient, path: str, content: bytes
) -> None:
    # Valid JSON escapes that decode to no Unicode character at all.
    response = await raw.post(path, content=content, headers=JSON)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/domains/a%00b.example",
        "/v1/domains/%F0%9F%98%80.example",
        "/v1/domains/%ED%A0%80.example",
        "/v1/domains/%FF.example",
        "/v1/domains/a%0Ab.example/dns",
        "/v1/domains/" + "a" * 10_000 + ".example",
    ],
    ids=["nul", "emoji", "surrogate", "invalid-utf8", "newline-dns", "overlong"],
)
async def test_errors_odd_path_is_client_error(raw: httpx.AsyncClient, path: str) -> None:
    response = await raw.get(path)

    assert 400 <= response.status_code < 500, response.text
    assert_error_shape(response)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/destinations/{}",
        "/v1/destinations/{}/resend",
        "/v1/tokens/{}",
    ],
)
@pytest.mark.parametrize("number", [0, -1, 2**31, 2**63, 2**70])
async def test_errors_id_out_of_range_is_client_error(
    raw: httpx.AsyncClient, path: str, number: int
) -> None:
    method = "POST" if path.endswith("/resend") else "DELETE"

    response = await raw.request(method, path.format(number))

    assert response.status_code in (404, 422), response.text
    assert_error_shape(response)


# --- media types --------------------------------------------------------------------------


async def test_errors_text_plain_body_is_415(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/v1/domains",
        content=b'{"name": "example.org"}',
        headers={"Content-Type": "text/plain"},
    )

    assert response.status_code == 415
    assert response.json() == UNSUPPORTED_MEDIA_TYPE


async def test_errors_form_encoded_body_is_415(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", data={"name": "example.org"})

    assert response.status_code == 415
    assert response.json() == UNSUPPORTED_MEDIA_TYPE


async def test_errors_body_without_content_type_is_415(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/domains", content=b'{"name": "example.org"}')

    assert response.status_code == 415
    assert response.json() == UNSUPPORTED_MEDIA_TYPE


async def test_errors_refused_media_type_creates_nothing(raw: httpx.AsyncClient) -> None:
    await raw.post("/v1/domains", data={"name": "example.org"})

    response = await raw.get("/v1/domains")

    assert response.json() == []


async def test_errors_json_with_charset_is_accepted(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/v1/domains",
        content=b'{"name": "example.org"}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )

    assert response.status_code == 201


async def test_errors_structured_json_suffix_is_accepted(raw: httpx.AsyncClient) -> None:
    await raw.post("/v1/domains", json={"name": "example.org"})

    response = await raw.patch(
        "/v1/domains/example.org",
        content=b'{"subaddressing": false}',
        headers={"Content-Type": "application/merge-patch+json"},
    )

    assert response.status_code == 200
    assert response.json()["subaddressing"] is False


# --- routing errors -----------------------------------------------------------------------


async def test_errors_unknown_path_is_404(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_errors_unknown_path_without_token_is_404(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_errors_wrong_method_is_405(raw: httpx.AsyncClient) -> None:
    response = await raw.put("/v1/domains", json={"name": "example.org"})

    assert response.status_code == 405
    assert response.json() == {
        "error": {"code": "method_not_allowed", "message": "Method Not Allowed"}
    }


async def test_errors_wrong_method_names_allowed_ones(raw: httpx.AsyncClient) -> None:
    response = await raw.put("/v1/domains")

    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


# --- one shape for all --------------------------------------------------------------------

ERROR_REQUESTS = [
    pytest.param("POST", "/v1/domains", {"content": b"{", "headers": JSON}, id="malformed"),
    pytest.param("POST", "/v1/domains", {"json": {"name": 5}}, id="validation"),
    pytest.param("POST", "/v1/domains", {"json": {"name": "localhost"}}, id="invalid-domain"),
    pytest.param("GET", "/v1/domains/nowhere.example", {}, id="domain-not-found"),
    pytest.param("GET", "/v1/destinations/5", {}, id="destination-not-found"),
    pytest.param("DELETE", "/v1/tokens/5", {}, id="token-not-found"),
    pytest.param("POST", "/v1/destinations", {"json": {"email": "x"}}, id="invalid-address"),
    pytest.param(
        "POST", "/v1/destinations", {"json": {"email": "a@nomail.example"}}, id="undeliverable"
    ),
    pytest.param("POST", "/v1/domains", {"data": {"name": "x"}}, id="media-type"),
    pytest.param("GET", "/v1/nothing-here", {}, id="no-route"),
    pytest.param("PATCH", "/v1/tokens", {"json": {}}, id="wrong-method"),
    pytest.param(
        "GET", "/v1/domains", {"headers": {"Authorization": "Basic x"}}, id="unauthorized"
    ),
    pytest.param("GET", "/v1/destinations/x", {}, id="path-type"),
    pytest.param("GET", "/v1/route", {}, id="missing-query"),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ERROR_REQUESTS)
async def test_errors_have_one_shape(
    raw: httpx.AsyncClient, method: str, path: str, kwargs: dict
) -> None:
    response = await raw.request(method, path, **kwargs)

    assert 400 <= response.status_code < 500, response.text
    assert_error_shape(response)


async def test_errors_conflict_has_one_shape(raw: httpx.AsyncClient) -> None:
    await raw.post("/v1/domains", json={"name": "example.org"})

    response = await raw.post("/v1/domains", json={"name": "example.org"})

    assert response.status_code == 409
    assert_error_shape(response)
