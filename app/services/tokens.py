"""API tokens: shown once at creation, stored only as a SHA-256 hash.

Tokens carry 240 random bits, so a fast hash is enough (no password-style stretching), and
looking one up by its hash does not leak timing about any stored token.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ApiToken
from app.db.types import utcnow
from app.errors import TokenNotFound
from app.services.digests import hash_secret

TOKEN_PREFIX = "mr_"
SHOWN_PREFIX_LENGTH = 10
# Record last use at most this often: a write per API call would serialise reads on SQLite.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class NewToken:
    token: ApiToken
    secret: str


async def create_token(session: AsyncSession, name: str) -> NewToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = ApiToken(name=name, token_hash=hash_secret(secret), prefix=secret[:SHOWN_PREFIX_LENGTH])
    session.add(token)
    await session.flush()
    return NewToken(token, secret)


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list(await session.scalars(select(ApiToken).order_by(ApiToken.id)))


async def revoke_token(session: AsyncSession, token_id: int) -> ApiToken:
    token = await session.get(ApiToken, token_id)
    if token is None:
        raise TokenNotFound(f"no token with id {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    await session.flush()
    return token


async def authenticate(session: AsyncSession, secret: str) -> ApiToken | None:
    """The live token whose secret this is, or None."""
    digest = hash_secret(secret)
    token = await session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if token is None or token.revoked_at is not None:
        return None
    if not hmac.compare_digest(token.token_hash, digest):
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        await session.flush()
    return token
