"""The ``mailroute`` command: run the service, migrate, and manage it from a shell.

``running`` holds the commands that run the service (``serve``, ``api``, ``smtp``,
``worker``, ``migrate``); one module per resource holds the commands that manage it,
as the API has one router per resource.
"""

from __future__ import annotations

import sys

import typer

from app.cli import aliases, blocks, destinations, dkim, domains, queue, running, tokens
from app.config import SettingsError

cli = typer.Typer(help="mailroute: email routing for your domains.", no_args_is_help=True)
cli.add_typer(running.cli)
cli.add_typer(tokens.cli, name="token")
cli.add_typer(domains.cli, name="domain")
cli.add_typer(aliases.cli, name="alias")
cli.add_typer(destinations.cli, name="destination")
cli.add_typer(blocks.cli, name="block")
cli.add_typer(queue.cli, name="queue")
cli.add_typer(dkim.cli, name="dkim")


def main() -> None:
    try:
        cli()
    except SettingsError as exc:
        typer.echo(f"mailroute: {exc}", err=True)
        sys.exit(2)
