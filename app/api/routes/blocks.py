from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import SessionDep
from app.api.routes.ids import Id
from app.api.schemas.base import Overlay
from app.api.schemas.blocks import BlockCreate, BlockPublic
from app.db.models import Block
from app.services import blocks

router = APIRouter(prefix="/blocks", tags=["blocks"])


def shown_block(block: Block) -> Overlay:
    return Overlay(block, kind=blocks.kind_of(block), scope=blocks.scope_of(block))


@router.post("", status_code=201, summary="Block a sender")
async def create_block(body: BlockCreate, session: SessionDep) -> BlockPublic:
    """Refuse mail from a sender (550 5.7.1 at RCPT) for all our domains, one, or one alias."""
    block = await blocks.create_block(session, body.sender, body.scope)
    return BlockPublic.model_validate(shown_block(block), from_attributes=True)


@router.get("", summary="List blocked senders")
async def list_blocks(session: SessionDep) -> list[BlockPublic]:
    """Every block, oldest first."""
    return [
        BlockPublic.model_validate(shown_block(b), from_attributes=True)
        for b in await blocks.list_blocks(session)
    ]


@router.delete("/{block_id}", status_code=204, summary="Unblock a sender")
async def delete_block(block_id: Id, session: SessionDep) -> Response:
    """Delete the block; mail from the sender is routed as any other from then on."""
    await blocks.delete_block(session, block_id)
    return Response(status_code=204)
