from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AliasPath, BaseModel, ConfigDict, Field, StrictBool

from app.api.schemas.base import Line, RequestModel
from app.routing.address import unicode_domain


class DomainCreate(RequestModel):
    name: Line = Field(
        min_length=1, max_length=300, description="Unicode or ASCII; stored as A-labels"
    )
    subaddressing: StrictBool = Field(True, description="Route local+tag to the alias local")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "example.org", "subaddressing": True}]}
    )


class DomainUpdate(RequestModel):
    subaddressing: StrictBool

    model_config = ConfigDict(json_schema_extra={"examples": [{"subaddressing": False}]})


class DomainPublic(BaseModel):
    name: str
    # The same (A-label) name, shown in Unicode. An AliasPath, as a plain alias "name" would
    # give the __init__ that pydantic's mypy plugin writes two parameters called name.
    unicode_name: Annotated[str, AfterValidator(unicode_domain)] = Field(
        validation_alias=AliasPath("name")
    )
    subaddressing: bool
    created_at: datetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "xn--bcher-kva.example",
                    "unicode_name": "bücher.example",
                    "subaddressing": True,
                    "created_at": "2026-11-29T10:00:00Z",
                }
            ]
        }
    )


class DnsRecordPublic(BaseModel):
    type: str
    name: str
    value: str
    in_place: bool | None = Field(description="Published now; null when the look-up failed")
    note: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "MX",
                    "name": "example.org",
                    "value": "10 mx.mailroute.example.",
                    "in_place": False,
                    "note": "routes the domain's mail to this server",
                }
            ]
        }
    )
