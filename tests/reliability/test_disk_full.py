"""The spool's file system fills up: DATA is answered 452 4.3.1 (RFC 5321 4.5.3.1.10,
RFC 3463 X.3.1), never 250, and nothing of the message stays behind; once space is free
again, the next message is accepted.

The SQLite database lives on a small tmpfs (mounting needs root: the test skips without,
except in CI where it must run); a file fills what is left of it.
"""

from __future__ import annotations

import errno
import os
import shutil
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.smtp import replies
from tests.conftest import sqlite_url
from tests.delivery.sink import Sink
from tests.peers.tools import IN_CI
from tests.reliability.conftest import InstallationFactory
from tests.reliability.load import CLIENT_NAME, SENDER, load_ids, load_message
from tests.reliability.service import ALIAS, Installation, count_messages, prepare_database

FILESYSTEM_SIZE = "8m"
# Larger than the WAL file grows to before the disk fills: SQLite reuses WAL space it
# has already written, so a small message could still fit (and be stored, rightly).
BIG_BODY = 1024 * 1024


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of FILESYSTEM_SIZE, mounted for this test only."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    problem = None
    if os.geteuid() != 0:
        problem = "mounting a tmpfs needs root"
    else:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM_SIZE}", "tmpfs", str(mountpoint)],
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
    yield mountpoint
    if subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30).returncode:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True, timeout=30)


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


def test_disk_full_data_answers_452_and_stores_nothing(
    small_filesystem: Path,
    sqlite_template: Path,
    installation: InstallationFactory,
    sink: Sink,
) -> None:
    shutil.copyfile(sqlite_template, small_filesystem / "mailroute.db")
    url = sqlite_url(small_filesystem / "mailroute.db")
    prepare_database(url)
    service = installation(url, inline_delivery_timeout="0")
    server = service.serve()
    assert send(service, big_message(0)).startswith("250 ")
    assert wait_until(lambda: count_messages(url) == 0, 15), "first message not delivered"

    filler = fill(small_filesystem)
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
