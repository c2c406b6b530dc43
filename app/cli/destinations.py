"""``mailroute destination``: the inboxes aliases forward to."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.console import run_db, settings, table
from app.resolver import DnsResolver
from app.routing.networks import DeliveryNetworks
from app.services import destinations
from app.services.destinations import MailIdentity

cli = typer.Typer(help="Destination inboxes.", no_args_is_help=True)


@cli.command("add")
def destination_add(
    email: str,
    verified: Annotated[
        bool, typer.Option("--verified", help="Your own inbox: skip the verification mail")
    ] = False,
) -> None:
    """Add a destination inbox (verification mail is sent unless --verified)."""
    s = settings()
    if verified:
        dest = run_db(lambda session: destinations.add_verified_destination(session, email))
    else:
        resolver = DnsResolver(s.dns_nameservers)
        dest = run_db(
            lambda session: destinations.create_destination(
                session,
                email,
                resolver=resolver,
                identity=MailIdentity(hostname=s.hostname, public_url=s.public_url),
                networks=DeliveryNetworks.for_destinations(
                    s.delivery_allowed_networks,
                    s.smtp_host,
                    s.smtp_port,
                    smarthost=bool(s.smarthost),
                ),
            )
        )
    typer.echo(f"destination {dest.id} {dest.email} added ({dest.status})")


@cli.command("list")
def destination_list() -> None:
    """List destination inboxes."""
    rows = run_db(destinations.list_destinations)
    table(
        ["ID", "EMAIL", "STATUS", "VERIFIED"],
        [(d.id, d.email, d.status, d.verified_at) for d in rows],
    )


@cli.command("remove")
def destination_remove(destination_id: int) -> None:
    """Remove a destination no alias uses."""
    run_db(lambda s: destinations.delete_destination(s, destination_id))
    typer.echo(f"destination {destination_id} removed")
