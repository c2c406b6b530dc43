"""The published OpenAPI document, with two corrections to what FastAPI generates:

- examples keep their ``null`` values (FastAPI drops every None while building the
  document, so ``{"expires_at": null}`` would be published as ``{}``);
- validation errors are documented with our error shape, the one the API really sends,
  instead of FastAPI's ``{"detail": [...]}``.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ERROR_REF = {"$ref": "#/components/schemas/ErrorPublic"}
NO_VALIDATION_ERRORS = ("/v1/verify/",)  # HTML pages: any token text is a 404 page


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            _restore_examples(schema)
            _document_our_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for model in pending.pop().__subclasses__():
            pending.append(model)
            if model.__module__.startswith("app.api"):
                found[model.__name__] = model
    return found


def _restore_examples(schema: dict[str, Any]) -> None:
    models = _models()
    for name, component in schema.get("components", {}).get("schemas", {}).items():
        model = models.get(name.removesuffix("-Input").removesuffix("-Output"))
        extra = model.model_config.get("json_schema_extra") if model else None
        if isinstance(extra, dict) and "examples" in extra:
            component["examples"] = copy.deepcopy(extra["examples"])


def _document_our_errors(schema: dict[str, Any]) -> None:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "422" not in responses:
                continue
            if path.startswith(NO_VALIDATION_ERRORS):
                del responses["422"]
            else:
                responses["422"] = {
                    "description": "Invalid value",
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
