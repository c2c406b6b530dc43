"""``mailroute queue``: the outbound queue, as postqueue and postcat show Postfix's."""

from __future__ import annotations

import sys

import typer

from app.cli.console import run_db, table
from app.services import queue

cli = typer.Typer(help="The outbound queue.", no_args_is_help=True)


@cli.command("list")
def queue_list() -> None:
    """Deliveries waiting to go out, soonest first (like postqueue -p)."""
    rows = run_db(queue.list_waiting)
    table(
        ["ID", "MESSAGE", "STATUS", "RECIPIENT", "ATTEMPTS", "NEXT ATTEMPT"],
        [(d.id, d.message_id, d.status, d.recipient, d.attempts, d.next_attempt_at) for d in rows],
    )


@cli.command("show")
def queue_show(message_id: int) -> None:
    """Print a stored message exactly as it will be sent (like postcat -q)."""
    message = run_db(lambda s: queue.get_message(s, message_id))
    sys.stdout.buffer.write(message.content)
    sys.stdout.buffer.flush()
