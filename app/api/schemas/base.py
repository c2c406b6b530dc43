"""Shared pieces of the schemas."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictStr,
)

# Control characters and lone surrogates (JSON can carry "\ud800") are refused in every text
# field: PostgreSQL cannot store NUL, no encoder takes a lone surrogate, and a CR or LF must
# never reach a header we write.
LINE_BREAKS = "\t\n\r"


def _check_text(value: str, allowed: str) -> str:
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs") and char not in allowed:
            raise ValueError(f"must not contain the control character U+{ord(char):04X}")
    return value


def single_line(value: str) -> str:
    return _check_text(value, "")


def multi_line(value: str) -> str:
    return _check_text(value, LINE_BREAKS)


Line = Annotated[StrictStr, AfterValidator(single_line)]
"""One line of text: no control characters at all."""

Paragraph = Annotated[StrictStr, AfterValidator(multi_line)]
"""Free text: tabs and line breaks allowed, other control characters not."""

_ISO_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_text(value: object) -> object:
    # Pydantic would read 0.5 or "1700000000" as seconds since 1970; the document promises
    # an RFC 3339 date-time, so a number is a mistake to refuse, not a guess to make.
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE_START.match(value)):
        return value
    raise ValueError("must be a date and time with a zone, such as 2026-05-01T12:00:00Z")


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(iso_text)]
"""A date and time with a zone, written as RFC 3339 text (no Unix timestamps)."""


class Overlay:
    """``base`` with some attributes added or replaced.

    A route answers with ``XPublic.model_validate(obj, from_attributes=True)``, the schema
    saying how each field is read (``validation_alias``, validators). When the answer shows
    what ``obj`` does not hold (a rule's state now, its address on its domain), the route
    validates ``Overlay(obj, status=...)`` instead, naming only what it adds.
    """

    def __init__(self, base: object, **extra: object) -> None:
        self._base = base
        vars(self).update(extra)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names __init__ did not set: those are the base's own.
        return getattr(self._base, name)


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
