from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.api.schemas.base import Line, RequestModel

BLOCK_EXAMPLE: JsonDict = {
    "id": 1,
    "sender": "spam@bad.example",
    "kind": "address",
    "scope": "shop@example.org",
    "created_at": "2026-12-03T10:00:00Z",
}


class BlockCreate(RequestModel):
    sender: Line = Field(
        min_length=1,
        max_length=320,
        description="An address, or a domain (which covers its subdomains too)",
    )
    scope: Line | None = Field(
        None,
        min_length=1,
        max_length=320,
        description="One of our domains or one alias address; omit for all our domains",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"sender": "spam@bad.example"},
                {"sender": "bad.example", "scope": "shop@example.org"},
            ]
        }
    )


class BlockPublic(BaseModel):
    id: int
    sender: str = Field(description="Normalised: local part in lower case, domain in A-labels")
    kind: Literal["address", "domain"]
    scope: str | None = Field(description="The domain or alias it applies to; null for all")
    created_at: datetime

    model_config = ConfigDict(json_schema_extra={"examples": [BLOCK_EXAMPLE]})
