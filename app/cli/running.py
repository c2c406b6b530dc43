"""Commands that run the service: ``migrate``, ``serve``, and one part each (``api``,
``smtp``, ``worker``) for scaling out. What they run is app.runtime.

The server stack (FastAPI, uvicorn, aiosmtpd, Alembic) is imported inside the commands
that run it: imported at the top, it would slow the start of every management command.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli import console
from app.config import Settings
from app.db.engine import create_engine

if TYPE_CHECKING:
    from app.runtime import Role

cli = typer.Typer()

# --wake-fd: serve hands its children one end of the pipe through which whoever stores
# mail wakes the worker (app.supervisor); hidden, as only serve gives it.
WakeFd = Annotated[int | None, typer.Option("--wake-fd", hidden=True)]


@cli.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date."""
    from app.db import migrate

    settings = console.settings()
    migrate.upgrade(settings.database_url)
    typer.echo(f"database at revision {migrate.head_revision()}")


@cli.command()
def serve() -> None:
    """Migrate, then run the API, the SMTP server and the delivery worker (in a child
    process of its own, beside any further SMTP processes: SMTP_PROCESSES)."""
    from app.db import migrate
    from app.runtime import serve as role

    settings = console.settings()
    migrate.upgrade(settings.database_url)
    _run(settings, role.run)


@cli.command()
def api() -> None:
    """Run the management API alone (run `mailroute migrate` first)."""
    from app.runtime import api as role

    _run(console.settings(), role.run)


@cli.command()
def smtp(wake_fd: WakeFd = None) -> None:
    """Run the inbound SMTP server alone; a `worker` somewhere delivers what it queues."""
    from app.runtime import smtp as role

    _run(console.settings(), lambda rt, stop: role.run(rt, stop, wake_fd))


@cli.command()
def worker(wake_fd: WakeFd = None) -> None:
    """Run a delivery worker alone; on PostgreSQL, any number may share the queue."""
    from app.runtime import worker as role

    _run(console.settings(), lambda rt, stop: role.run(rt, stop, wake_fd))


def _run(settings: Settings, role: Role) -> None:
    """Run ``role`` once the database's schema is the code's."""
    from app import runtime

    async def main() -> None:
        await _check_schema(settings)
        await runtime.run(settings, role)

    # uvloop: the same asyncio, with the event loop and transports in C, for less CPU per
    # SMTP session (bench/forwarding.py reports each server's CPU time); the standard loop
    # where uvloop is not built (Windows).
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


async def _check_schema(settings: Settings) -> None:
    from app.db import migrate

    engine = create_engine(settings.database_url)
    try:
        current, head = await migrate.current_revision(engine), migrate.head_revision()
    finally:
        await engine.dispose()
    if current != head:
        typer.echo(
            f"mailroute: database at revision {current}, code wants {head}: "
            "run `mailroute migrate`",
            err=True,
        )
        raise typer.Exit(1)
