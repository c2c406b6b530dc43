"""FastAPI dependencies: the request's session (its unit of work), auth, and the context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.context import ApiContext
from app.db.engine import session_scope
from app.db.models import ApiToken
from app.services import tokens


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
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiToken:
    if credentials is None:
        raise Unauthorized("missing_token", "send Authorization: Bearer <token>")
    # A unit of work of its own, so the request's session starts only when the route needs it.
    async with session_scope(context.sessionmaker) as session:
        token = await tokens.authenticate(session, credentials.credentials)
    if token is None:
        raise Unauthorized("invalid_token", "the token is unknown or revoked")
    return token


TokenDep = Annotated[ApiToken, Depends(require_token)]
