"""FastAPI dependencies: the request's session (its unit of work), auth, and the context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.context import ApiContext
from app.db.models import ApiToken


class Unauthorized(Exception):
    """No usable ``Authorization: Bearer`` token; mapped to 401 in app.api.errors."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_session(context: ContextDep) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed before the response is sent (scope=function),
    so a client never sees success for a change that did not reach the database. A route
    may commit early, before slow work (DNS) that should not hold SQLite's write lock."""
    async with context.sessionmaker() as session:
        yield session
        await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

bearer = HTTPBearer(auto_error=False, description="A token from `mailroute token create`")


async def require_token(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    """The token app.api.auth.TokenAuth accepted; ``bearer`` documents the scheme in OpenAPI."""
    token: ApiToken | None = getattr(request.state, "api_token", None)
    if token is None:  # only reachable if the middleware is not installed
        raise Unauthorized("missing_token", "send Authorization: Bearer <token>")
    return token


TokenDep = Annotated[ApiToken, Depends(require_token)]
