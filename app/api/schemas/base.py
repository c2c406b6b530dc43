"""Shared pieces of the schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """A request body: unknown fields are errors, not guesses. Fields use Strict* types, so
    ``"true"`` is not a boolean and ``5`` is not a name (datetimes still parse from text)."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, object]] | None = None


class ErrorPublic(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    error: ErrorDetail

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"code": "alias_exists", "message": "shop@example.org exists"}}]
        }
    )
