from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.routing import MatchKind, Refusal


class MatchedRule(BaseModel):
    type: Literal["alias", "catch_all"] = Field(validation_alias="kind")  # a RuleKind
    address: str = Field(description="The alias address, or *@domain for a catch-all")
    status: str


class RoutePublic(BaseModel):
    address: str = Field(description="The address as routed (domain in ASCII)")
    outcome: Literal["forward", "drop", "refuse"]
    matched_by: MatchKind | None
    rule: MatchedRule | None
    destinations: list[str]
    refusal: Refusal | None
    explanation: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "address": "shop+news@example.org",
                    "outcome": "forward",
                    "matched_by": "subaddress",
                    "rule": {"type": "alias", "address": "shop@example.org", "status": "active"},
                    "destinations": ["me@inbox.example"],
                    "refusal": None,
                    "explanation": "mail for shop+news@example.org is forwarded to "
                    "me@inbox.example",
                }
            ]
        }
    )
