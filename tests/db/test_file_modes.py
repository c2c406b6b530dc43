"""The SQLite database holds queued mail and the SRS secret: its directory and files are for
their owner alone, whatever the umask, as `mailroute` creates them in a real process."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HOSTNAME
from tests.peers.processes import greeting
from tests.peers.tools import free_port

MAILROUTE = Path(sys.executable).with_name("mailroute")
START_TIMEOUT = 60.0
USUAL_UMASK = 0o022  # what most shells and service managers leave: files 0644


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def environment(database: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROUTE_")}
    return env | {
        "MAILROUTE_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "MAILROUTE_HOSTNAME": HOSTNAME,
        "MAILROUTE_INBOUND_AUTH": "off",
        **extra,
    }


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Path]:
    """`mailroute serve` on a data directory that does not exist yet; the database path."""
    database = tmp_path / "data" / "mailroute.db"
    smtp_port = free_port()
    env = environment(
        database, MAILROUTE_SMTP_PORT=str(smtp_port), MAILROUTE_API_PORT=str(free_port())
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(MAILROUTE), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            umask=USUAL_UMASK,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not greeting("127.0.0.1", smtp_port):
            assert process.poll() is None, f"serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"serve not up:\n{log.read_text()}"
            time.sleep(0.1)
        yield database
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def test_serve_creates_data_directory_and_database_private(serving: Path) -> None:
    database = serving
    wal = database.with_name(database.name + "-wal")
    shm = database.with_name(database.name + "-shm")
    # While serve runs, its connections keep the WAL and its index open.
    assert wal.exists() and shm.exists()
    assert mode(database.parent) == 0o700
    assert {path.name: mode(path) for path in (database, wal, shm)} == {
        "mailroute.db": 0o600,
        "mailroute.db-wal": 0o600,
        "mailroute.db-shm": 0o600,
    }


def test_migrate_makes_a_readable_database_private(tmp_path: Path) -> None:
    # A database a former version left 0644 in a directory the operator made.
    database = tmp_path / "mailroute.db"
    sqlite3.connect(database).close()
    database.chmod(0o644)
    result = subprocess.run(
        [str(MAILROUTE), "migrate"],
        capture_output=True,
        text=True,
        env=environment(database),
        umask=USUAL_UMASK,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert mode(database) == 0o600
