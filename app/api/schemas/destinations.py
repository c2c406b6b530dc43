from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.base import Line, RequestModel


class DestinationCreate(RequestModel):
    email: Line = Field(min_length=3, max_length=320)

    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "me@inbox.example"}]})


class DestinationPublic(BaseModel):
    id: int
    email: str
    status: Literal["pending", "verified"]
    verified_at: datetime | None
    created_at: datetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "email": "me@inbox.example",
                    "status": "pending",
                    "verified_at": None,
                    "created_at": "2026-11-29T10:00:00Z",
                }
            ]
        }
    )
