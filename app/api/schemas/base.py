"""Shared pieces of the schemas."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictStr

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
