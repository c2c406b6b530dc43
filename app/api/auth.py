"""Bearer-token authentication, checked before anything else looks at the request.

A middleware rather than only a dependency: FastAPI parses the body before it runs route
dependencies, so an anonymous caller would learn how an endpoint parses (400, 415, 422)
before being told it may not call it. Here every /v1 request without a live token gets a
401 first, whatever else is wrong with it.

Rate limits are applied here too, for the same reason: per token once it is known (429),
and per client address for failed authentications, checked before the token lookup, so a
caller guessing tokens cannot make the database do one lookup per guess.
"""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.context import ApiContext
from app.api.errors import database_unavailable, error_response
from app.db.engine import session_scope
from app.db.models import ApiToken
from app.ratelimit import Rate, RateLimiter
from app.services import tokens

PROTECTED_PREFIX = "/v1/"
PUBLIC_PREFIXES = ("/v1/verify/",)  # the single-use link is the credential there
MISSING = ("missing_token", "send Authorization: Bearer <token>")
INVALID = ("invalid_token", "the token is unknown or revoked")
TOO_MANY_REQUESTS = "too many requests with this token"
TOO_MANY_FAILURES = "too many failed authentications from this address"


def bearer_credentials(headers: Headers) -> str | None:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


class TokenAuth:
    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.context = context
        self.per_token = _limiter(context.token_rate, context)
        self.failures_per_address = _limiter(context.auth_failure_rate, context)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(PROTECTED_PREFIX) or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        response, token = await self._admit(scope)
        if response is not None:
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["api_token"] = token
        await self.app(scope, receive, send)

    async def _admit(self, scope: Scope) -> tuple[Response | None, ApiToken | None]:
        """The token the request may proceed with, or the answer that refuses it."""
        secret = bearer_credentials(Headers(scope=scope))
        if secret is None:
            return unauthorized(MISSING), None
        address = _client_address(scope)
        # Taken before the lookup and given back when the token is good: concurrent guesses
        # cannot all pass a check made before any of them has failed.
        if self.failures_per_address and (wait := self.failures_per_address.take(address)):
            return rate_limited(wait, TOO_MANY_FAILURES), None  # before any lookup
        try:
            token = await self._authenticate(secret)
        except (OperationalError, InterfaceError, OSError):
            if self.failures_per_address:
                self.failures_per_address.give_back(address)
            return database_unavailable(), None
        if token is None:
            return unauthorized(INVALID), None
        if self.failures_per_address:
            self.failures_per_address.give_back(address)
        if self.per_token and (wait := self.per_token.take(token.id)):
            return rate_limited(wait, TOO_MANY_REQUESTS), None
        return None, token

    async def _authenticate(self, secret: str) -> ApiToken | None:
        async with session_scope(self.context.sessionmaker) as session:
            return await tokens.authenticate(session, secret)


def _limiter(rate: Rate | None, context: ApiContext) -> RateLimiter | None:
    return RateLimiter(rate, clock=context.clock) if rate else None


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def unauthorized(reason: tuple[str, str]) -> Response:
    return error_response(401, *reason, headers={"WWW-Authenticate": "Bearer"})


def rate_limited(wait: int, message: str) -> Response:
    # RFC 6585 4: 429, with Retry-After (RFC 9110 10.2.3) in whole seconds.
    return error_response(
        429, "rate_limited", f"{message}; retry in {wait} s", headers={"Retry-After": str(wait)}
    )
