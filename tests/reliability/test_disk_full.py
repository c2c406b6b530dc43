"""The spool's file system fills up: DATA is answered 452 4.3.1 (RFC 5321 4.5.3.1.10,
RFC 3463 X.3.1), never 250, and nothing of the message stays behind; once space is free
again, the next message is accepted.

The SQLite database, or the tablespace of PostgreSQL's messages and message_parts tables
(where large content goes), lives on a small tmpfs (mounting needs root: the tests skip
without, except in CI where they must run); a file fills what is left of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pwd
import secrets
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.db import migrate
from app.smtp import replies
from tests.conftest import sqlite_url
from tests.delivery.sink import Sink
from tests.peers.tools import IN_CI
from tests.reliability.conftest import InstallationFactory
from tests.reliability.load import CLIENT_NAME, SENDER, load_ids, load_message
from tests.reliability.service import ALIAS, Installation, count_messages, prepare_database

FILESYSTEM_SIZE = "8m"
# Far more than the space files already hold (SQLite's WAL, PostgreSQL's relation files
# are reused before they grow): a message that needs new blocks.
BIG_BODY = 1024 * 1024


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``mountpoint`` while the block runs."""
    problem = None
    if os.geteuid() != 0:
        problem = "mounting a tmpfs needs root"
    else:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if mounted.returncode != 0:
            problem = f"mount -t tmpfs failed: {mounted.stderr.strip()}"
    if problem is not None:
        if IN_CI:
            pytest.fail(f"{problem}: CI must run this test as root")
        pytest.skip(problem)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True, timeout=30)


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    with tmpfs(mountpoint, FILESYSTEM_SIZE):
        yield mountpoint


def run_admin(url: str, *statements: str) -> None:
    """Statements that cannot run in a transaction (CREATE DATABASE, TABLESPACE)."""

    async def run() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                for statement in statements:
                    await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def small_tablespace_database(postgres_url: str) -> Iterator[tuple[str, Path]]:
    """A database of its own (``<test database>_diskfull``), migrated, whose messages
    table (with its TOAST table, where content goes) and message_parts table (where the
    content of a large message goes, app.db.parts) live in a tablespace on a tmpfs; its
    URL and the tmpfs. The tablespace directory must be on the server's machine."""
    url = make_url(postgres_url)
    try:
        server_user = pwd.getpwnam("postgres")
    except KeyError:
        server_user = None
    if url.host not in ("127.0.0.1", "localhost", "::1") or server_user is None:
        reason = "PostgreSQL is not running on this machine as user postgres"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"{url.database}_diskfull"
    tablespace = f"{url.database}_small_{secrets.token_hex(3)}"
    database_url = url.set(database=name).render_as_string(hide_password=False)
    # Not under tmp_path: the server's user must be able to reach the directory.
    mountpoint = Path(tempfile.mkdtemp(prefix="mailroute-tablespace-"))
    try:
        with tmpfs(mountpoint, FILESYSTEM_SIZE):
            os.chown(mountpoint, server_user.pw_uid, server_user.pw_gid)
            mountpoint.chmod(0o700)
            run_admin(
                postgres_url,
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                f'CREATE DATABASE "{name}"',
                f"CREATE TABLESPACE \"{tablespace}\" LOCATION '{mountpoint}'",
            )
            try:
                migrate.upgrade(database_url)
                for table in ("messages", "message_parts"):
                    run_admin(database_url, f'ALTER TABLE {table} SET TABLESPACE "{tablespace}"')
                yield database_url, mountpoint
            finally:
                run_admin(
                    postgres_url,
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    f'DROP TABLESPACE IF EXISTS "{tablespace}"',
                )
    finally:
        mountpoint.rmdir()


def fill(directory: Path) -> Path:
    """A file taking every free byte of ``directory``'s file system."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as file:
        for chunk in (64 * 1024, 4096, 512, 1):
            try:
                while True:
                    file.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def big_message(number: int) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return load_message(number, ALIAS) + line * (BIG_BODY // len(line))


def send(service: Installation, content: bytes) -> str:
    """The reply to the end of DATA."""
    with smtplib.SMTP("127.0.0.1", service.smtp_port, CLIENT_NAME, timeout=30) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(ALIAS)
        code, text = client.data(content)
        return f"{code} {text.decode()}"


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def small_message(number: int) -> bytes:
    return load_message(number, ALIAS)


def check_disk_full(
    url: str, filesystem: Path, installation: InstallationFactory, sink: Sink
) -> None:
    """Fill ``filesystem`` under a serve on ``url``: 452 and nothing stored, then 250."""
    service = installation(url, inline_delivery_timeout="0")
    server = service.serve()
    assert send(service, small_message(0)).startswith("250 ")
    assert wait_until(lambda: count_messages(url) == 0, 15), "first message not delivered"

    filler = fill(filesystem)
    full = send(service, big_message(1))
    stored_while_full = count_messages(url)
    filler.unlink()
    after = send(service, big_message(2))

    assert full == replies.S452_STORAGE
    assert stored_while_full == 0
    assert after.startswith("250 ")
    assert load_ids(sink.wait_for(2, timeout=15)) == {0: 1, 2: 1}
    assert wait_until(lambda: count_messages(url) == 0, 15), "a message stayed in the spool"
    server.check_alive()


def test_disk_full_sqlite_data_answers_452_and_stores_nothing(
    small_filesystem: Path,
    sqlite_template: Path,
    installation: InstallationFactory,
    sink: Sink,
) -> None:
    shutil.copyfile(sqlite_template, small_filesystem / "mailroute.db")
    url = sqlite_url(small_filesystem / "mailroute.db")
    prepare_database(url)
    check_disk_full(url, small_filesystem, installation, sink)


@pytest.mark.postgres
def test_disk_full_postgresql_data_answers_452_and_stores_nothing(
    small_tablespace_database: tuple[str, Path],
    installation: InstallationFactory,
    sink: Sink,
) -> None:
    url, filesystem = small_tablespace_database
    prepare_database(url)
    check_disk_full(url, filesystem, installation, sink)
