"""``mailroute domain``: the domains mail is routed for."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.console import run_db, table
from app.services import domains

cli = typer.Typer(help="Domains.", no_args_is_help=True)


@cli.command("add")
def domain_add(
    name: str,
    subaddressing: Annotated[bool, typer.Option(help="Route local+tag to local")] = True,
) -> None:
    """Add a domain."""
    domain = run_db(lambda s: domains.create_domain(s, name, subaddressing=subaddressing))
    typer.echo(f"domain {domain.name} added")


@cli.command("list")
def domain_list() -> None:
    """List domains."""
    rows = run_db(domains.list_domains)
    table(
        ["NAME", "SUBADDRESSING", "CREATED"],
        [(d.name, d.subaddressing, d.created_at) for d in rows],
    )


@cli.command("remove")
def domain_remove(name: str) -> None:
    """Remove a domain and all its aliases."""
    run_db(lambda s: domains.delete_domain(s, name))
    typer.echo(f"domain {name} removed")
