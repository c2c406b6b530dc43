"""/openapi.json: the API's documentation, checked for what a reader needs from it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from app.api.app import create_app
from app.api.context import ApiContext
from app.api.schemas import aliases, base, destinations, domains, route, tokens
from tests.fakes import FakeResolver

# Reading the spec touches no database: placeholders are enough to build the app for it.
SPEC = create_app(
    ApiContext(sessionmaker=None, resolver=FakeResolver(), identity=None)  # type: ignore[arg-type]
).openapi()
OPERATIONS = [
    pytest.param(path, method, id=f"{method.upper()} {path}")
    for path, ops in SPEC["paths"].items()
    for method in ops
]
JSON_BODIES = [
    pytest.param(path, method, id=f"{method.upper()} {path}")
    for path, ops in SPEC["paths"].items()
    for method, op in ops.items()
    if "application/json" in op.get("requestBody", {}).get("content", {})
]
JSON_SUCCESSES = [
    pytest.param(path, method, status, id=f"{method.upper()} {path} {status}")
    for path, ops in SPEC["paths"].items()
    for method, op in ops.items()
    for status, response in op["responses"].items()
    if status.startswith("2") and "application/json" in response.get("content", {})
]

MODELS_WITH_EXAMPLES = [
    pytest.param(model, id=model.__name__)
    for module in (aliases, base, destinations, domains, route, tokens)
    for model in vars(module).values()
    if isinstance(model, type)
    and issubclass(model, BaseModel)
    and model.__module__ == module.__name__
    and "examples" in model.model_json_schema()
]


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` into components/schemas."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = SPEC["components"]["schemas"][ref.rpartition("/")[2]]
    return resolved


def examples_of(schema: dict[str, Any]) -> list[Any]:
    """The examples a reader sees: the schema's own, or for a list, its items' examples."""
    schema = resolve(schema)
    found = list(schema.get("examples", []))
    if "example" in schema:
        found.append(schema["example"])
    if not found and schema.get("type") == "array":
        found = [[item] for item in examples_of(schema["items"])]
    return found


def missing_required(schema: dict[str, Any], example: Any) -> set[str]:
    """Required properties the example leaves out (one level, and inside list items)."""
    schema = resolve(schema)
    if schema.get("type") == "array" and isinstance(example, list):
        return set().union(*(missing_required(schema["items"], item) for item in example))
    if isinstance(example, dict):
        return set(schema.get("required", [])) - set(example)
    return set()


def request_schema(path: str, method: str) -> dict[str, Any]:
    schema: dict[str, Any] = SPEC["paths"][path][method]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    return schema


def response_schema(path: str, method: str, status: str) -> dict[str, Any]:
    schema: dict[str, Any] = SPEC["paths"][path][method]["responses"][status]["content"][
        "application/json"
    ]["schema"]
    return schema


async def test_openapi_is_served_as_built(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/openapi.json")

    assert response.status_code == 200
    assert response.json() == SPEC


def test_openapi_lists_every_endpoint() -> None:
    listed = {(method.upper(), path) for path, ops in SPEC["paths"].items() for method in ops}

    assert listed == {
        ("GET", "/healthz"),
        ("GET", "/v1/activity"),
        ("GET", "/v1/queue"),
        ("POST", "/v1/queue/{delivery_id}/retry"),
        ("DELETE", "/v1/queue/{delivery_id}"),
        ("GET", "/v1/domains"),
        ("POST", "/v1/domains"),
        ("GET", "/v1/domains/{name}"),
        ("PATCH", "/v1/domains/{name}"),
        ("DELETE", "/v1/domains/{name}"),
        ("GET", "/v1/domains/{name}/dns"),
        ("GET", "/v1/server/dns"),
        ("GET", "/v1/domains/{domain}/aliases"),
        ("POST", "/v1/domains/{domain}/aliases"),
        ("GET", "/v1/domains/{domain}/aliases/{local_part}"),
        ("PATCH", "/v1/domains/{domain}/aliases/{local_part}"),
        ("DELETE", "/v1/domains/{domain}/aliases/{local_part}"),
        ("GET", "/v1/domains/{domain}/catch-all"),
        ("PUT", "/v1/domains/{domain}/catch-all"),
        ("GET", "/v1/blocks"),
        ("POST", "/v1/blocks"),
        ("DELETE", "/v1/blocks/{block_id}"),
        ("GET", "/v1/destinations"),
        ("POST", "/v1/destinations"),
        ("GET", "/v1/destinations/{destination_id}"),
        ("DELETE", "/v1/destinations/{destination_id}"),
        ("POST", "/v1/destinations/{destination_id}/resend"),
        ("GET", "/v1/route"),
        ("GET", "/v1/tokens"),
        ("POST", "/v1/tokens"),
        ("DELETE", "/v1/tokens/{token_id}"),
        ("GET", "/v1/verify/{token}"),
        ("POST", "/v1/verify/{token}"),
    }


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_openapi_operation_has_summary_and_description(path: str, method: str) -> None:
    operation = SPEC["paths"][path][method]

    assert operation.get("summary", "").strip()
    assert operation.get("description", "").strip()


def test_openapi_summaries_are_unique() -> None:
    summaries = [op["summary"] for ops in SPEC["paths"].values() for op in ops.values()]

    assert len(summaries) == len(set(summaries))


@pytest.mark.parametrize(("path", "method"), JSON_BODIES)
def test_openapi_request_body_has_example(path: str, method: str) -> None:
    assert examples_of(request_schema(path, method))


@pytest.mark.parametrize(("path", "method"), JSON_BODIES)
def test_openapi_request_body_example_has_required_fields(path: str, method: str) -> None:
    schema = request_schema(path, method)

    for example in examples_of(schema):
        assert missing_required(schema, example) == set(), example


@pytest.mark.parametrize(("path", "method", "status"), JSON_SUCCESSES)
def test_openapi_success_response_has_example(path: str, method: str, status: str) -> None:
    assert examples_of(response_schema(path, method, status))


@pytest.mark.parametrize(("path", "method", "status"), JSON_SUCCESSES)
def test_openapi_success_example_has_required_fields(path: str, method: str, status: str) -> None:
    schema = response_schema(path, method, status)

    for example in examples_of(schema):
        assert missing_required(schema, example) == set(), example


def test_openapi_json_bodies_found() -> None:
    # The parametrized checks above run over these lists; they must not come out empty.
    assert len(JSON_BODIES) >= 7
    assert len(JSON_SUCCESSES) >= 15


def test_openapi_error_schema_has_example() -> None:
    schema = SPEC["components"]["schemas"]["ErrorPublic"]

    assert schema["examples"] == [
        {"error": {"code": "alias_exists", "message": "shop@example.org exists"}}
    ]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        pytest.param(path, method, id=f"{method.upper()} {path}")
        for path, ops in SPEC["paths"].items()
        for method in ops
        if path.startswith("/v1/") and not path.startswith("/v1/verify/")
    ],
)
def test_openapi_documents_error_answers(path: str, method: str) -> None:
    responses = SPEC["paths"][path][method]["responses"]

    assert responses["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorPublic"
    }
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorPublic"
    }


def test_openapi_documents_only_our_error_shape() -> None:
    # FastAPI's default 422 schema is {"detail": [...]}, a shape this API never answers with.
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]


@pytest.mark.parametrize("model", MODELS_WITH_EXAMPLES)
def test_openapi_examples_are_published_as_written(model: type[BaseModel]) -> None:
    # An example's null values are part of it: {"expires_at": null} clears, {} changes nothing.
    published = SPEC["components"]["schemas"][model.__name__]["examples"]

    assert published == model.model_json_schema()["examples"]
