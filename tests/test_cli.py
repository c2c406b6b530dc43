"""The mailroute command, run as a user runs it: a real process, a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest

from app.db import migrate
from app.signing.keys import generate_rsa
from tests.peers.dnsmasq import Dnsmasq, Zone

MAILROUTE = Path(sys.executable).with_name("mailroute")


@pytest.fixture
def dnsmasq_zone() -> Zone:
    return Zone(local_domains=["inbox.example"], mx=[("inbox.example", "mx.inbox.example", 10)])


@pytest.fixture
def database(database_url: str, engine: object) -> str:
    """The test database, emptied (the engine fixture truncates PostgreSQL)."""
    return database_url


def run(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MAILROUTE_")}
    environment |= {"MAILROUTE_DATABASE_URL": database_url, "MAILROUTE_HOSTNAME": "mx.example.org"}
    environment |= env or {}
    return subprocess.run(
        [str(MAILROUTE), *args], capture_output=True, text=True, env=environment, timeout=60
    )


def test_cli_bad_setting_prints_one_line_and_exits_2(database: str) -> None:
    result = run(database, "domain", "list", env={"MAILROUTE_API_PORT": "eighty"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mailroute: invalid setting MAILROUTE_API_PORT: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]
    assert "Traceback" not in result.stderr


def test_cli_token_create_prints_secret_alone_on_last_line(database: str) -> None:
    result = run(database, "token", "create", "--name", "laptop")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("mr_") and " " not in secret and len(secret) >= 40
    listed = run(database, "token", "list")
    assert "laptop" in listed.stdout
    assert secret not in listed.stdout


def test_cli_token_revoke_marks_it_revoked(database: str) -> None:
    run(database, "token", "create", "--name", "old")
    result = run(database, "token", "revoke", "1")
    assert result.returncode == 0, result.stderr
    assert "revoked" in result.stdout
    assert run(database, "token", "revoke", "99").returncode == 1


def test_cli_manages_domain_destination_and_alias(database: str) -> None:
    steps = [
        ("domain", "add", "Bücher.example"),
        ("destination", "add", "me@inbox.example", "--verified"),
        ("alias", "add", "bücher.example", "shop", "--to", "me@inbox.example"),
    ]
    for step in steps:
        result = run(database, *step)
        assert result.returncode == 0, (step, result.stderr)
    domains = run(database, "domain", "list").stdout.splitlines()
    assert domains[0].split() == ["NAME", "SUBADDRESSING", "CREATED"]
    assert domains[1].split()[:2] == ["xn--bcher-kva.example", "True"]
    destinations = run(database, "destination", "list").stdout.splitlines()
    assert destinations[1].split()[:3] == ["1", "me@inbox.example", "verified"]
    aliases = run(database, "alias", "list", "xn--bcher-kva.example").stdout.splitlines()
    assert aliases[1].split() == [
        "shop@xn--bcher-kva.example",
        "forward",
        "me@inbox.example",
        "True",
    ]


def test_cli_errors_are_one_line_with_exit_1(database: str) -> None:
    result = run(database, "alias", "add", "nowhere.example", "shop", "--to", "a@b.example")
    assert result.returncode == 1
    assert result.stderr.strip() == "mailroute: no domain named nowhere.example"


def test_cli_destination_remove_refuses_one_in_use(database: str) -> None:
    run(database, "domain", "add", "example.org")
    run(database, "destination", "add", "me@inbox.example", "--verified")
    run(database, "alias", "add", "example.org", "--to", "me@inbox.example")
    result = run(database, "destination", "remove", "1")
    assert result.returncode == 1
    assert "used by 1 rule" in result.stderr


def test_cli_migrate_reports_head(tmp_path: Path) -> None:
    fresh = f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'mailroute.db'}"
    result = run(fresh, "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database at revision {migrate.head_revision()}"


@pytest.mark.dnsmasq
def test_cli_queue_shows_verification_message(database: str, dnsmasq: Dnsmasq) -> None:
    nameserver = {"MAILROUTE_DNS_NAMESERVERS": f"{dnsmasq.host}:{dnsmasq.port}"}
    added = run(database, "destination", "add", "me@inbox.example", env=nameserver)
    assert added.returncode == 0, added.stderr
    listed = run(database, "queue", "list").stdout.splitlines()
    assert listed[1].split()[:5] == ["1", "1", "queued", "me@inbox.example", "0"]
    shown = run(database, "queue", "show", "1").stdout
    assert "To: me@inbox.example" in shown
    assert "/v1/verify/" in shown
    assert run(database, "queue", "show", "2").returncode == 1


def test_cli_blocks_adds_lists_and_removes_a_sender(database: str) -> None:
    run(database, "domain", "add", "example.org")
    added = run(database, "block", "add", "Spam@Bad.example", "--scope", "example.org")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "block 1: spam@bad.example blocked for example.org"
    assert run(database, "block", "add", "bad.example").returncode == 0

    listed = run(database, "block", "list").stdout.splitlines()
    assert listed[0].split() == ["ID", "SENDER", "KIND", "SCOPE", "CREATED"]
    assert [line.split()[:4] for line in listed[1:]] == [
        ["1", "spam@bad.example", "address", "example.org"],
        ["2", "bad.example", "domain", "*"],
    ]

    assert run(database, "block", "remove", "1").stdout.strip() == "block 1 removed"
    missing = run(database, "block", "remove", "1")
    assert (missing.returncode, missing.stderr.strip()) == (1, "mailroute: no block 1")


def test_cli_blocks_unknown_scope_is_an_error(database: str) -> None:
    result = run(database, "block", "add", "bad.example", "--scope", "nowhere.example")
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "mailroute: no domain named nowhere.example",
    )


# --- mailroute dkim ---------------------------------------------------------------------


def dkim_lines(output: str) -> list[tuple[str, str, str]]:
    """(name, type, value) of each record line; comment lines left out."""
    records = []
    for line in output.strip().splitlines():
        if not line.startswith("#") and " TXT " in line:
            name, rdtype, value = line.split(" ", 2)
            records.append((name, rdtype, value))
    return records


def test_cli_dkim_show_prints_the_generated_keys_records(database: str) -> None:
    result = run(database, "dkim", "show")
    assert result.returncode == 0, result.stderr
    records = dkim_lines(result.stdout)
    selector = f"mr{datetime.now(UTC):%Y%m}"
    assert [(name, rdtype) for name, rdtype, _ in records] == [
        (f"{selector}._domainkey.mx.example.org", "TXT"),
        (f"{selector}-ed._domainkey.mx.example.org", "TXT"),
    ]
    assert records[0][2].startswith("v=DKIM1; k=rsa; p=")
    assert records[1][2].startswith("v=DKIM1; k=ed25519; p=")
    _pk, bits, _ktag, _seq = dkim.evaluate_pk(records[0][0], records[0][2])
    assert bits == 2048
    assert "#" not in result.stdout  # nothing retired
    assert run(database, "dkim", "show").stdout == result.stdout  # stored, not made anew


def test_cli_dkim_show_names_the_signing_domain(database: str) -> None:
    env = {"MAILROUTE_SIGNING_DOMAIN": "example.org", "MAILROUTE_DKIM_SELECTOR": "relay"}
    result = run(database, "dkim", "show", env=env)
    assert result.returncode == 0, result.stderr
    assert [name for name, _, _ in dkim_lines(result.stdout)] == [
        "relay._domainkey.example.org",
        "relay-ed._domainkey.example.org",
    ]


def test_cli_dkim_rotate_prints_new_records_and_keeps_the_old(database: str) -> None:
    before = dkim_lines(run(database, "dkim", "show").stdout)
    result = run(database, "dkim", "rotate")
    assert result.returncode == 0, result.stderr
    fresh = dkim_lines(result.stdout)
    assert len(fresh) == 2 and not set(fresh) & set(before)
    selector = f"mr{datetime.now(UTC):%Y%m}b"
    assert [name for name, _, _ in fresh] == [
        f"{selector}._domainkey.mx.example.org",
        f"{selector}-ed._domainkey.mx.example.org",
    ]
    until = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    assert "stay valid for 7 days" in result.stdout and until in result.stdout

    shown = run(database, "dkim", "show")
    assert dkim_lines(shown.stdout) == before + fresh
    comments = [line for line in shown.stdout.splitlines() if line.startswith("#")]
    assert len(comments) == 2
    assert all("in its grace period" in line and until in line for line in comments)

    after_grace = run(database, "dkim", "show", env={"MAILROUTE_DKIM_ROTATION_GRACE_DAYS": "0"})
    assert dkim_lines(after_grace.stdout) == fresh


def test_cli_dkim_key_file_is_shown_and_not_rotated(database: str, tmp_path: Path) -> None:
    path = tmp_path / "dkim.pem"
    key = generate_rsa("ignored", datetime.now(UTC))
    path.write_bytes(key.private_key)
    env = {"MAILROUTE_DKIM_KEY_FILE": str(path), "MAILROUTE_DKIM_SELECTOR": "mine"}
    shown = run(database, "dkim", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert dkim_lines(shown.stdout) == [("mine._domainkey.mx.example.org", "TXT", key.record())]
    rotated = run(database, "dkim", "rotate", env=env)
    assert rotated.returncode == 1
    assert "MAILROUTE_DKIM_KEY_FILE" in rotated.stderr


def test_cli_dkim_bad_key_file_is_one_line(database: str, tmp_path: Path) -> None:
    # Checked with the settings: every command, serve included, stops with the reason.
    path = tmp_path / "dkim.pem"
    path.write_text("not a key\n")
    for command in (["dkim", "show"], ["serve"]):
        result = run(database, *command, env={"MAILROUTE_DKIM_KEY_FILE": str(path)})
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"mailroute: invalid setting MAILROUTE_DKIM_KEY_FILE: Value error, {path} is not"
            " an unencrypted PEM private key (such as openssl genrsa writes)"
        ]
