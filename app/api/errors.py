"""The one table from errors to HTTP answers, all shaped ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from app.api.deps import Unauthorized
from app.errors import (
    Conflict,
    DnsError,
    InvalidInput,
    MailrouteError,
    NotFound,
    RateLimited,
    VerificationFailed,
)

log = logging.getLogger(__name__)

# First match wins, so subclasses come before their bases.
STATUS_BY_ERROR: list[tuple[type[MailrouteError], int]] = [
    (VerificationFailed, 404),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (RateLimited, 429),
    (DnsError, 503),
]

HTTP_CODES = {
    # FastAPI raises a bare 400 only when it cannot decode the body (e.g. not UTF-8).
    400: "malformed_json",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def status_for(exc: MailrouteError) -> int:
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(exc, kind)), 400)


async def _mailroute_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MailrouteError)
    # RFC 6585 4: a 429 may say how long to wait, in Retry-After (RFC 9110 10.2.3).
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    return error_response(status_for(exc), exc.code, exc.message, headers=headers)


async def _unauthorized(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Unauthorized)
    return error_response(401, exc.code, exc.message, headers={"WWW-Authenticate": "Bearer"})


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    details = [
        {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
        for e in errors
    ]
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    first = details[0] if details else {"location": "request", "message": "invalid"}
    return error_response(
        422, "validation_error", f"{first['location']}: {first['message']}", details=details
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    message = str(exc.detail)
    if exc.status_code == 400:
        message = "the request body is not valid JSON"
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return error_response(exc.status_code, code, message, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some operation takes at this path (RFC 9110 15.5.6); Starlette names
    only the first route whose path matched. Read from the OpenAPI paths: public API."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def database_unavailable() -> JSONResponse:
    return error_response(
        503,
        "database_unavailable",
        "the database cannot be reached; try again shortly",
        headers={"Retry-After": "5"},
    )


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # Connection-level failures only; a bug in a query still surfaces as a 500.
    log.warning("database unavailable: %s", type(exc).__name__)
    return database_unavailable()


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "an internal error occurred; it was logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MailrouteError, _mailroute_error)
    app.add_exception_handler(Unauthorized, _unauthorized)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(OSError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
