"""The ``mailroute`` command: run the service, migrate, and manage it from a shell."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, SettingsError, get_settings
from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.errors import MailrouteError
from app.resolver import DnsResolver
from app.routing import Action
from app.routing.networks import DeliveryNetworks
from app.services import aliases, destinations, domains, queue, tokens
from app.services.destinations import MailIdentity

if TYPE_CHECKING:
    from app.runtime import Role

T = TypeVar("T")

cli = typer.Typer(help="mailroute: email routing for your domains.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
domain_cli = typer.Typer(help="Domains.", no_args_is_help=True)
alias_cli = typer.Typer(help="Aliases on a domain.", no_args_is_help=True)
destination_cli = typer.Typer(help="Destination inboxes.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")
cli.add_typer(domain_cli, name="domain")
cli.add_typer(alias_cli, name="alias")
cli.add_typer(destination_cli, name="destination")
queue_cli = typer.Typer(help="The outbound queue.", no_args_is_help=True)
cli.add_typer(queue_cli, name="queue")


def main() -> None:
    try:
        cli()
    except SettingsError as exc:
        typer.echo(f"mailroute: {exc}", err=True)
        sys.exit(2)


def _settings() -> Settings:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.log_level != "DEBUG":
        # aiosmtpd logs every command at INFO, with addresses: too much for a mail log.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    return settings


def _identity(settings: Settings) -> MailIdentity:
    return MailIdentity(hostname=settings.hostname, public_url=settings.public_url)


def _run_db(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work against the configured database; errors become one line."""
    settings = _settings()

    async def run() -> T:
        engine = create_engine(settings.database_url)
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


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# --- running -------------------------------------------------------------------------


@cli.command("migrate")
def migrate_command() -> None:
    """Bring the database schema up to date."""
    from app.db import migrate

    settings = _settings()
    migrate.upgrade(settings.database_url)
    typer.echo(f"database at revision {migrate.head_revision()}")


@cli.command()
def serve() -> None:
    """Migrate, then run the API, the SMTP server and the delivery worker (in a child
    process of its own, beside any further SMTP processes: SMTP_PROCESSES)."""
    from app.db import migrate
    from app.runtime import serve as role

    settings = _settings()
    migrate.upgrade(settings.database_url)
    _run_role(settings, role.run)


@cli.command()
def api() -> None:
    """Run the management API alone (run `mailroute migrate` first)."""
    from app.runtime import api as role

    _run_role(_settings(), role.run)


@cli.command()
def smtp(
    wake_fd: Annotated[int | None, typer.Option("--wake-fd", hidden=True)] = None,
) -> None:
    """Run the inbound SMTP server alone; a `worker` somewhere delivers what it queues."""
    # --wake-fd: serve's SMTP children wake its worker through this pipe (app.supervisor).
    from app.runtime import smtp as role

    _run_role(_settings(), lambda rt, stop: role.run(rt, stop, wake_fd))


@cli.command()
def worker(
    wake_fd: Annotated[int | None, typer.Option("--wake-fd", hidden=True)] = None,
) -> None:
    """Run a delivery worker alone; on PostgreSQL, any number may share the queue."""
    # --wake-fd: serve's worker child is woken through this pipe (app.supervisor).
    from app.runtime import worker as role

    _run_role(_settings(), lambda rt, stop: role.run(rt, stop, wake_fd))


def _run_role(settings: Settings, role: Role) -> None:
    # Imported here: the server stack (FastAPI, uvicorn, aiosmtpd, Alembic) would otherwise
    # slow every management command by most of a second.
    from app import runtime
    from app.db import migrate

    async def main() -> None:
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
        await runtime.run(settings, role)

    # uvloop: the same asyncio, with the event loop and transports in C (a third less CPU
    # per SMTP session here); the standard loop where uvloop is not built (Windows).
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


# --- tokens --------------------------------------------------------------------------


@token_cli.command("create")
def token_create(name: Annotated[str, typer.Option(help="What the token is for")]) -> None:
    """Create an API token; the secret is printed once, alone on the last line."""
    new = _run_db(lambda s: tokens.create_token(s, name))
    typer.echo(f"token {new.token.id} ({name}) created; it is shown only now:")
    typer.echo(new.secret)


@token_cli.command("list")
def token_list() -> None:
    """List API tokens."""
    rows = _run_db(tokens.list_tokens)
    _table(
        ["ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"],
        [(t.id, t.name, t.prefix, t.created_at, t.last_used_at, t.revoked_at) for t in rows],
    )


@token_cli.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke an API token."""
    token = _run_db(lambda s: tokens.revoke_token(s, token_id))
    typer.echo(f"token {token.id} ({token.name}) revoked")


# --- domains -------------------------------------------------------------------------


@domain_cli.command("add")
def domain_add(
    name: str,
    subaddressing: Annotated[bool, typer.Option(help="Route local+tag to local")] = True,
) -> None:
    """Add a domain."""
    domain = _run_db(lambda s: domains.create_domain(s, name, subaddressing=subaddressing))
    typer.echo(f"domain {domain.name} added")


@domain_cli.command("list")
def domain_list() -> None:
    """List domains."""
    rows = _run_db(domains.list_domains)
    _table(
        ["NAME", "SUBADDRESSING", "CREATED"],
        [(d.name, d.subaddressing, d.created_at) for d in rows],
    )


@domain_cli.command("remove")
def domain_remove(name: str) -> None:
    """Remove a domain and all its aliases."""
    _run_db(lambda s: domains.delete_domain(s, name))
    typer.echo(f"domain {name} removed")


# --- destinations --------------------------------------------------------------------


@destination_cli.command("add")
def destination_add(
    email: str,
    verified: Annotated[
        bool, typer.Option("--verified", help="Your own inbox: skip the verification mail")
    ] = False,
) -> None:
    """Add a destination inbox (verification mail is sent unless --verified)."""
    settings = _settings()
    if verified:
        dest = _run_db(lambda s: destinations.add_verified_destination(s, email))
    else:
        resolver = DnsResolver(settings.dns_nameservers)
        dest = _run_db(
            lambda s: destinations.create_destination(
                s,
                email,
                resolver=resolver,
                identity=_identity(settings),
                networks=DeliveryNetworks.for_destinations(
                    settings.delivery_allowed_networks,
                    settings.smtp_host,
                    settings.smtp_port,
                    smarthost=bool(settings.smarthost),
                ),
            )
        )
    typer.echo(f"destination {dest.id} {dest.email} added ({dest.status})")


@destination_cli.command("list")
def destination_list() -> None:
    """List destination inboxes."""
    rows = _run_db(destinations.list_destinations)
    _table(
        ["ID", "EMAIL", "STATUS", "VERIFIED"],
        [(d.id, d.email, d.status, d.verified_at) for d in rows],
    )


@destination_cli.command("remove")
def destination_remove(destination_id: int) -> None:
    """Remove a destination no alias uses."""
    _run_db(lambda s: destinations.delete_destination(s, destination_id))
    typer.echo(f"destination {destination_id} removed")


# --- aliases -------------------------------------------------------------------------


@alias_cli.command("add")
def alias_add(
    domain: str,
    local_part: Annotated[str | None, typer.Argument(help="Omit for a disposable address")] = None,
    to: Annotated[list[str] | None, typer.Option("--to", help="Destination (repeatable)")] = None,
    drop: Annotated[bool, typer.Option("--drop", help="Accept and discard")] = False,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create an alias forwarding to --to inboxes (or --drop)."""
    rule = _run_db(
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


@alias_cli.command("list")
def alias_list(domain: str) -> None:
    """List a domain's aliases."""
    page = _run_db(lambda s: aliases.list_aliases(s, domain, limit=10_000))
    _table(
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


@alias_cli.command("remove")
def alias_remove(domain: str, local_part: str) -> None:
    """Delete an alias."""
    _run_db(lambda s: aliases.delete_alias(s, domain, local_part))
    typer.echo(f"alias {local_part}@{domain} removed")


# --- queue ---------------------------------------------------------------------------


@queue_cli.command("list")
def queue_list() -> None:
    """Deliveries waiting to go out, soonest first (like postqueue -p)."""
    rows = _run_db(queue.list_waiting)
    _table(
        ["ID", "MESSAGE", "STATUS", "RECIPIENT", "ATTEMPTS", "NEXT ATTEMPT"],
        [(d.id, d.message_id, d.status, d.recipient, d.attempts, d.next_attempt_at) for d in rows],
    )


@queue_cli.command("show")
def queue_show(message_id: int) -> None:
    """Print a stored message exactly as it will be sent (like postcat -q)."""
    message = _run_db(lambda s: queue.get_message(s, message_id))
    sys.stdout.buffer.write(message.content)
    sys.stdout.buffer.flush()


if __name__ == "__main__":  # `python -m app.cli`, as serve starts its SMTP children
    main()
