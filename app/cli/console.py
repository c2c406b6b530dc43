"""What the commands share: settings (and logging) from the environment, one unit of
work against the database, a table on stdout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.errors import MailrouteError

T = TypeVar("T")


def settings() -> Settings:
    """The settings, with logging configured as they say."""
    loaded = get_settings()
    logging.basicConfig(
        level=loaded.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if loaded.log_level != "DEBUG":
        # aiosmtpd logs every command at INFO, with addresses: too much for a mail log.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    return loaded


def run_db(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work against the configured database; errors become one line."""
    database_url = settings().database_url

    async def run() -> T:
        engine = create_engine(database_url)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except MailrouteError as exc:
        typer.echo(f"mailroute: {exc.message}", err=True)
        raise typer.Exit(1) from None


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
