"""Blocked senders: an address, or a domain and its subdomains, refused at RCPT.

A block applies to every served domain, to one of them, or to one alias (its scope).
mailroute has one owner: whoever holds an API token manages every domain, so a block is
the server's, as domains and aliases are. What a block covers is app.routing.blocks.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.db.models import Block, Domain, Rule
from app.errors import BlockExists, BlockNotFound, InvalidAddress
from app.routing import normalize_domain, parse_address
from app.services.aliases import get_alias
from app.services.domains import get_domain

ADDRESS = "address"
DOMAIN = "domain"


def normalize_block_sender(sender: str) -> str:
    """An address (local part lower-cased, domain in A-labels) or a domain; raise
    InvalidAddress or InvalidDomain."""
    text = sender.strip()
    if "@" not in text:
        return normalize_domain(text)
    address = parse_address(text)
    if address.is_literal:
        raise InvalidAddress(f"{sender!r}: block a sender by name, not by an IP literal")
    return f"{address.key}@{address.domain}"


def kind_of(block: Block) -> str:
    return ADDRESS if "@" in block.sender else DOMAIN


def scope_of(block: Block) -> str | None:
    """What the block applies to: an alias's address, a domain, or None (every domain)."""
    if block.rule is not None and block.domain is not None:
        return f"{block.rule.local_part}@{block.domain.name}"
    return block.domain.name if block.domain is not None else None


async def create_block(session: AsyncSession, sender: str, scope: str | None = None) -> Block:
    """Block ``sender`` for ``scope``: one of our domains, one alias address, or None for
    all of them. An unknown domain or alias raises DomainNotFound or AliasNotFound."""
    normalized = normalize_block_sender(sender)
    domain: Domain | None = None
    rule: Rule | None = None
    if scope is not None and "@" in scope:
        local, _, domain_name = scope.strip().rpartition("@")
        domain = await get_domain(session, domain_name)
        rule = await get_alias(session, domain_name, local)
    elif scope is not None:
        domain = await get_domain(session, scope)
    same = await session.scalar(
        select(Block.id).where(
            Block.sender == normalized,
            Block.domain_id.is_(None) if domain is None else Block.domain_id == domain.id,
            Block.rule_id.is_(None) if rule is None else Block.rule_id == rule.id,
        )
    )
    if same is not None:
        raise BlockExists(f"{normalized} is already blocked there (block {same})")
    # The relationships set, not only their ids: scope_of reads them, none left to load.
    block = Block(sender=normalized, domain=domain, rule=rule)
    session.add(block)
    await session.flush()
    return block


async def list_blocks(session: AsyncSession) -> list[Block]:
    """Every block, oldest first."""
    return list(await session.scalars(_loaded().order_by(Block.id)))


async def get_block(session: AsyncSession, block_id: int) -> Block:
    block = await session.scalar(_loaded().where(Block.id == block_id))
    if block is None:
        raise BlockNotFound(f"no block {block_id}")
    return block


async def delete_block(session: AsyncSession, block_id: int) -> None:
    """Unblock: mail from the sender is routed as any other from then on."""
    block = await get_block(session, block_id)
    await session.delete(block)
    await session.flush()


def _loaded() -> Select[Block]:
    return select(Block).options(selectinload(Block.domain), selectinload(Block.rule))
