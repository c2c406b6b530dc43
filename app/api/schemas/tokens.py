from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.api.schemas.base import Line, RequestModel


class TokenCreate(RequestModel):
    name: Line = Field(min_length=1, max_length=100)

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "laptop"}]})


TOKEN_EXAMPLE: JsonDict = {
    "id": 1,
    "name": "laptop",
    "prefix": "mr_Xk3v9Qa",
    "created_at": "2026-11-29T10:00:00Z",
    "last_used_at": None,
    "revoked_at": None,
}


class TokenPublic(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    model_config = ConfigDict(json_schema_extra={"examples": [TOKEN_EXAMPLE]})


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret; shown only in this answer")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**TOKEN_EXAMPLE, "token": "mr_Xk3v9QaT0pS3cr3t-shown-once-only-keep-it-safe"}
            ]
        }
    )
