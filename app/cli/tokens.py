"""``mailroute token``: API tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.console import run_db, table
from app.services import tokens

cli = typer.Typer(help="API tokens.", no_args_is_help=True)


@cli.command("create")
def token_create(name: Annotated[str, typer.Option(help="What the token is for")]) -> None:
    """Create an API token; the secret is printed once, alone on the last line."""
    new = run_db(lambda s: tokens.create_token(s, name))
    typer.echo(f"token {new.token.id} ({name}) created; it is shown only now:")
    typer.echo(new.secret)


@cli.command("list")
def token_list() -> None:
    """List API tokens."""
    rows = run_db(tokens.list_tokens)
    table(
        ["ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"],
        [(t.id, t.name, t.prefix, t.created_at, t.last_used_at, t.revoked_at) for t in rows],
    )


@cli.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke an API token."""
    token = run_db(lambda s: tokens.revoke_token(s, token_id))
    typer.echo(f"token {token.id} ({token.name}) revoked")
