from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
)
from pydantic.config import JsonDict

from app.api.schemas.base import IsoDatetime, Line, Paragraph, RequestModel

Email = Annotated[Line, Field(min_length=3, max_length=320)]
Destinations = Annotated[list[Email], Field(max_length=10)]
Note = Annotated[Paragraph, Field(max_length=1000)]
ActionName = Literal["forward", "drop"]
StateName = Literal[
    "active", "disabled", "expired", "limit_reached", "no_destinations", "unverified_destinations"
]


def destination_emails(destinations: Iterable[Any]) -> list[str]:
    """A rule's destinations (rows with an ``email``), shown as their addresses, sorted."""
    return sorted(d.email for d in destinations)


RuleDestinations = Annotated[list[str], BeforeValidator(destination_emails)]


ALIAS_EXAMPLE: JsonDict = {
    "address": "shop@example.org",
    "local_part": "shop",
    "domain": "example.org",
    "disposable": False,
    "action": "forward",
    "destinations": ["me@inbox.example"],
    "enabled": True,
    "expires_at": None,
    "max_messages": None,
    "message_count": 0,
    "note": None,
    "active": False,
    "status": "unverified_destinations",
    "reason": "waiting for verification of me@inbox.example",
    "created_at": "2026-11-29T10:00:00Z",
    "updated_at": "2026-11-29T10:00:00Z",
}


class AliasCreate(RequestModel):
    local_part: Line | None = Field(
        None, min_length=1, max_length=64, description="Omit for a generated disposable address"
    )
    action: ActionName = "forward"
    destinations: Destinations = Field(default_factory=list)
    enabled: StrictBool = True
    expires_at: IsoDatetime | None = None
    max_messages: StrictInt | None = Field(None, ge=1, le=2_000_000_000)
    note: Note | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"local_part": "shop", "destinations": ["me@inbox.example"]},
                {"destinations": ["me@inbox.example"], "max_messages": 20, "note": "forum"},
            ]
        }
    )


class AliasUpdate(RequestModel):
    """Only the fields sent change; ``null`` clears expires_at, max_messages or note."""

    action: ActionName | None = None
    destinations: Destinations | None = None
    enabled: StrictBool | None = None
    expires_at: IsoDatetime | None = None
    max_messages: StrictInt | None = Field(None, ge=1, le=2_000_000_000)
    note: Note | None = None

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"enabled": False}, {"expires_at": None}]}
    )


class RuleStatus(BaseModel):
    active: bool = Field(description="Whether mail to the address is accepted now")
    status: StateName
    reason: str | None = Field(description="Why it is not active")


class AliasPublic(RuleStatus):
    address: str
    local_part: str
    domain: str
    disposable: bool
    action: ActionName
    destinations: RuleDestinations
    enabled: bool
    expires_at: datetime | None
    max_messages: int | None
    message_count: int
    note: str | None
    created_at: datetime
    updated_at: datetime

    model_config = ConfigDict(json_schema_extra={"examples": [ALIAS_EXAMPLE]})


class AliasPage(BaseModel):
    items: list[AliasPublic]
    total: int
    limit: int
    offset: int

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [ALIAS_EXAMPLE], "total": 1, "limit": 50, "offset": 0}]
        }
    )


class CatchAllPut(RequestModel):
    enabled: StrictBool
    action: ActionName = "forward"
    destinations: Destinations = Field(default_factory=list)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"enabled": True, "action": "forward", "destinations": ["me@inbox.example"]}
            ]
        }
    )


class CatchAllPublic(RuleStatus):
    domain: str
    enabled: bool
    action: ActionName
    destinations: RuleDestinations

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "domain": "example.org",
                    "enabled": False,
                    "action": "forward",
                    "destinations": [],
                    "active": False,
                    "status": "disabled",
                    "reason": "the rule is disabled",
                }
            ]
        }
    )
