"""``mailroute alias``: the addresses on a domain and where their mail goes."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.console import run_db, table
from app.routing import Action
from app.services import aliases

cli = typer.Typer(help="Aliases on a domain.", no_args_is_help=True)


@cli.command("add")
def alias_add(
    domain: str,
    local_part: Annotated[str | None, typer.Argument(help="Omit for a disposable address")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="Destination (repeatable)")] = None,
    drop: Annotated[bool, typer.Option("--drop", help="Accept and discard")] = False,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create an alias forwarding to --to inboxes (or --drop)."""
    rule = run_db(
        lambda s: aliases.create_alias(
            s,
            domain,
            local_part=local_part,
            action=Action.DROP if drop else Action.FORWARD,
            destinations=to or [],
            note=note,
        )
    )
    typer.echo(f"alias {rule.local_part}@{domain} created")


@cli.command("list")
def alias_list(domain: str) -> None:
    """List a domain's aliases."""
    page = run_db(lambda s: aliases.list_aliases(s, domain, limit=10_000))
    table(
        ["ADDRESS", "ACTION", "DESTINATIONS", "ENABLED", "NOTE"],
        [
            (
                f"{r.local_part}@{domain}",
                r.action,
                ",".join(d.email for d in r.destinations),
                r.enabled,
                r.note,
            )
            for r in page.items
        ],
    )


@cli.command("remove")
def alias_remove(domain: str, local_part: str) -> None:
    """Delete an alias."""
    run_db(lambda s: aliases.delete_alias(s, domain, local_part))
    typer.echo(f"alias {local_part}@{domain} removed")
