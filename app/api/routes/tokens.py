from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import SessionDep
from app.api.routes.ids import Id
from app.api.schemas.base import Overlay
from app.api.schemas.tokens import TokenCreate, TokenCreated, TokenPublic
from app.services import tokens

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("", summary="List API tokens")
async def list_tokens(session: SessionDep) -> list[TokenPublic]:
    """Every token, live or revoked; secrets are never shown again."""
    return [
        TokenPublic.model_validate(t, from_attributes=True)
        for t in await tokens.list_tokens(session)
    ]


@router.post("", status_code=201, summary="Create an API token")
async def create_token(body: TokenCreate, session: SessionDep) -> TokenCreated:
    """A new token; its secret is in this answer only, so keep it."""
    new = await tokens.create_token(session, body.name)
    return TokenCreated.model_validate(Overlay(new.token, token=new.secret), from_attributes=True)


@router.delete("/{token_id}", summary="Revoke an API token")
async def revoke_token(token_id: Id, session: SessionDep) -> TokenPublic:
    """Revoke a token at once; it stays listed, marked revoked."""
    return TokenPublic.model_validate(
        await tokens.revoke_token(session, token_id), from_attributes=True
    )
