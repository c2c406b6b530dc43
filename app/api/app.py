"""Building the FastAPI application from an explicit context (no settings read here)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from app import __version__
from app.api.auth import TokenAuth
from app.api.body_limit import BodyLimit
from app.api.content_type import RequireJsonBody
from app.api.context import ApiContext
from app.api.deps import require_token
from app.api.errors import install_error_handlers
from app.api.openapi import install_openapi
from app.api.routes import (
    activity,
    aliases,
    blocks,
    catch_all,
    destinations,
    domains,
    health,
    queue,
    route,
    server,
    tokens,
    verify,
)
from app.api.schemas.base import ErrorPublic

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorPublic, "description": description}
    for status, description in [
        (400, "Malformed request"),
        (401, "Missing, unknown or revoked token"),
        (404, "Not found"),
        (409, "Conflicts with the current state"),
        (413, "Request body too large"),
        (422, "Invalid value"),
        (429, "Too many requests with this token, or failed ones from this address"),
        (503, "Database or DNS unavailable"),
    ]
}
ERROR_RESPONSES[429]["headers"] = {
    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
}


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="mailroute",
        version=__version__,
        summary="Custom and disposable addresses on your domains, forwarded to your inboxes.",
    )
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(RequireJsonBody)
    app.add_middleware(TokenAuth, context=context)
    app.add_middleware(BodyLimit, max_body_size=context.max_body_size)  # added last: runs first

    protected = APIRouter(dependencies=[Depends(require_token)], responses=ERROR_RESPONSES)
    for module in (
        domains,
        destinations,
        aliases,
        catch_all,
        blocks,
        route,
        tokens,
        activity,
        queue,
        server,
    ):
        protected.include_router(module.router)
    v1 = APIRouter(prefix="/v1")
    v1.include_router(protected)
    v1.include_router(verify.router)
    app.include_router(v1)
    app.include_router(health.router)
    install_openapi(app)
    return app
