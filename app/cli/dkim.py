"""``mailroute dkim``: our DKIM keys, the records to publish for them, and rotation."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from app.cli.console import run_db, settings
from app.config import Settings
from app.services import signing_keys
from app.signing.keys import SigningKey

cli = typer.Typer(help="Our DKIM signing keys and their DNS records.", no_args_is_help=True)


def _source(s: Settings) -> signing_keys.KeySource:
    return signing_keys.KeySource(s.dkim_selector, s.dkim_key_file, s.dkim_rotation_grace)


def _echo_record(key: SigningKey, domain: str) -> None:
    typer.echo(f"{key.selector}._domainkey.{domain} TXT {key.record()}")


@cli.command("show")
def dkim_show() -> None:
    """Print the DKIM key records to publish (name, type, value), one per line."""
    s = settings()
    source = _source(s)
    keys = run_db(lambda session: source.published(session, datetime.now(UTC)))
    for key in keys:
        _echo_record(key, s.signing_domain)
    for key in keys:
        if key.retired_at is not None:
            until = (key.retired_at + source.grace).date().isoformat()
            typer.echo(
                f"# {key.selector}: retired {key.retired_at.date().isoformat()}, in its grace "
                f"period: keep its record until {until}, then remove it"
            )


@cli.command("rotate")
def dkim_rotate() -> None:
    """Make new keys under a new selector; the old ones keep verifying for the grace period."""
    s = settings()
    if s.dkim_key_file is not None:
        typer.echo(
            "mailroute: the key comes from MAILROUTE_DKIM_KEY_FILE; replace that file "
            "(and MAILROUTE_DKIM_SELECTOR) to change it",
            err=True,
        )
        raise typer.Exit(1)
    now = datetime.now(UTC)
    old = run_db(lambda session: _source(s).active(session, now))
    fresh = run_db(lambda session: signing_keys.rotate(session, now, s.dkim_rotation_grace))
    typer.echo("new DKIM keys; publish their records:")
    for key in fresh:
        _echo_record(key, s.signing_domain)
    until = (now + s.dkim_rotation_grace).date().isoformat()
    selectors = ", ".join(key.selector for key in old)
    typer.echo(
        f"# the old keys ({selectors}) stay valid for {s.dkim_rotation_grace_days} days: "
        f"keep their records until {until}"
    )
