"""``mailroute block``: senders refused at RCPT (550 5.7.1)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.console import run_db, table
from app.services import blocks

cli = typer.Typer(help="Blocked senders.", no_args_is_help=True)


@cli.command("add")
def block_add(
    sender: Annotated[str, typer.Argument(help="An address, or a domain and its subdomains")],
    scope: Annotated[
        str | None,
        typer.Option("--scope", help="One of our domains or one alias; default: all domains"),
    ] = None,
) -> None:
    """Block a sender for all our domains, or for --scope."""
    block = run_db(lambda s: blocks.create_block(s, sender, scope))
    where = blocks.scope_of(block) or "all domains"
    typer.echo(f"block {block.id}: {block.sender} blocked for {where}")


@cli.command("list")
def block_list() -> None:
    """List blocked senders."""
    rows = run_db(blocks.list_blocks)
    table(
        ["ID", "SENDER", "KIND", "SCOPE", "CREATED"],
        [
            (b.id, b.sender, blocks.kind_of(b), blocks.scope_of(b) or "*", b.created_at)
            for b in rows
        ],
    )


@cli.command("remove")
def block_remove(block_id: int) -> None:
    """Unblock: remove a block by its id."""
    run_db(lambda s: blocks.delete_block(s, block_id))
    typer.echo(f"block {block_id} removed")
