"""Bearer-token authentication, checked before anything else looks at the request.

A middleware rather than only a dependency: FastAPI parses the body before it runs route
dependencies, so an anonymous caller would learn how an endpoint parses (400, 415, 422)
before being told it may not call it. Here every /v1 request without a live token gets a
401 first, whatever else is wrong with it.
"""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.context import ApiContext
from app.api.errors import error_response
from app.db.engine import session_scope
from app.db.models import ApiToken
from app.services import tokens

PROTECTED_PREFIX = "/v1/"
PUBLIC_PREFIXES = ("/v1/verify/",)  # the single-use link is the credential there
MISSING = ("missing_token", "send Authorization: Bearer <token>")
INVALID = ("invalid_token", "the token is unknown or revoked")


def bearer_credentials(headers: Headers) -> str | None:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


class TokenAuth:
    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PROTECTED_PREFIX) or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        secret = bearer_credentials(Headers(scope=scope))
        try:
            token = None if secret is None else await self._authenticate(secret)
        except (OperationalError, InterfaceError, OSError):
            response = error_response(
                503,
                "database_unavailable",
                "the database cannot be reached; try again shortly",
                headers={"Retry-After": "5"},
            )
            await response(scope, receive, send)
            return
        if token is None:
            code, message = MISSING if secret is None else INVALID
            response = error_response(401, code, message, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["api_token"] = token
        await self.app(scope, receive, send)

    async def _authenticate(self, secret: str) -> ApiToken | None:
        async with session_scope(self.context.sessionmaker) as session:
            return await tokens.authenticate(session, secret)
