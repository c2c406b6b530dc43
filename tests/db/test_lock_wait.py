"""Waiting for SQLite's write lock held by another connection (app.db.engine
begin_immediate): the writer gets it once it is released, and gives up with SQLITE_BUSY
only after its timeout; other errors are not waited on."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db.engine import begin_immediate, create_sqlite_writer
from tests.conftest import sqlite_url


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "lock.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x INTEGER)")
    return path


@pytest.fixture
def holder(database: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the write lock until the test releases it."""
    connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    connection.execute("BEGIN IMMEDIATE")
    yield connection
    connection.close()


def writer(database: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(database, isolation_level=None, timeout=0)
    return connection


def test_begin_immediate_waits_for_the_lock_to_be_released(
    database: Path, holder: sqlite3.Connection
) -> None:
    connection = writer(database)
    releaser = threading.Timer(0.05, holder.execute, ["COMMIT"])
    releaser.start()
    begin_immediate(connection, timeout=30)
    releaser.join()
    connection.execute("INSERT INTO t VALUES (1)")
    connection.execute("COMMIT")
    assert connection.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_begin_immediate_gives_up_after_its_timeout(
    database: Path, holder: sqlite3.Connection
) -> None:
    connection = writer(database)
    with pytest.raises(sqlite3.OperationalError) as raised:
        begin_immediate(connection, timeout=0.05)
    assert raised.value.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    assert not connection.in_transaction


class Counting(sqlite3.Connection):
    tries = 0

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
        if sql == "BEGIN IMMEDIATE":
            self.tries += 1
        return super().execute(sql, *args)


def test_begin_immediate_does_not_wait_on_other_errors(database: Path) -> None:
    connection = sqlite3.connect(database, isolation_level=None, factory=Counting)
    connection.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_immediate(connection, timeout=30)
    assert connection.tries == 1


def test_writer_engine_still_busy_raises_sqlalchemys_operational_error(
    database: Path, holder: sqlite3.Connection
) -> None:
    # What the SMTP server catches to answer 451: SQLAlchemy's error, not sqlite3's,
    # although the begin listener that waits runs outside SQLAlchemy's wrapping.
    engine = create_sqlite_writer(sqlite_url(database), busy_timeout_ms=50)
    try:
        with pytest.raises(OperationalError) as raised, Session(engine) as session:
            session.connection()
        orig = raised.value.orig
        assert isinstance(orig, sqlite3.OperationalError)
        assert orig.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    finally:
        engine.dispose()
