"""The mailroute command, run as a user runs it: a real process, a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.db import migrate
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
