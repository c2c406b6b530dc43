"""The engine and session factory, with SQLite tuned for durability and concurrency.

SQLite has one writer at a time. Several connections of one process taking turns at the
write lock would wait in SQLite's busy handler, which sleeps in steps of up to 100 ms;
so a process writes through one connection, and its transactions queue in the pool
instead. Reads that must not wait behind writes (RCPT look-ups) go through
app.db.reader, on connections of their own that WAL lets read beside the writer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# How long a writer waits for another process's write lock before it gives up (SQLITE_BUSY).
SQLITE_BUSY_TIMEOUT_MS = 30_000
LOCK_POLL_FIRST = 0.0001  # seconds between the first tries of a busy write lock
LOCK_POLL_MAX = 0.001


def create_engine(url: str, *, foreign_keys: bool = True, pooled: bool = True) -> AsyncEngine:
    """An async engine for ``url``; on SQLite, WAL, full fsync and immediate transactions.

    ``foreign_keys=False`` is for migrations only: SQLite's batch ALTER copies and drops
    tables, and with enforcement on, dropping a parent would cascade into its children.
    """
    if make_url(url).get_backend_name() != "sqlite":
        # Enough connections for a busy server's concurrent sessions, kept open: past the
        # pool, SQLAlchemy opens and closes one per use, and PostgreSQL forks a backend
        # for each.
        kwargs: dict[str, Any] = (
            {"pool_size": 10, "max_overflow": 10} if pooled else {"poolclass": NullPool}
        )
        return create_async_engine(url, pool_pre_ping=True, **kwargs)
    prepare_sqlite_files(url)
    # One connection: the process's writers queue here, not in SQLite's busy handler.
    kwargs = {"pool_size": 1, "max_overflow": 0} if pooled else {"poolclass": NullPool}
    engine = create_async_engine(url, **kwargs)
    _tune_sqlite(engine, foreign_keys=foreign_keys, read_only=False)
    return engine


def create_sqlite_reader(url: str) -> Engine:
    """A synchronous, read-only engine on the SQLite database at ``url`` (see app.db.reader)."""
    prepare_sqlite_files(url)
    engine = sa_create_engine(make_url(url).set(drivername="sqlite+pysqlite"))
    _tune_sqlite(engine, foreign_keys=True, read_only=True)
    return engine


def create_sqlite_writer(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """A synchronous engine of one connection on the SQLite database at ``url``, tuned as
    the async one, for the SMTP server's group commit (app.db.group_commit); a transaction
    waits up to ``busy_timeout_ms`` for the write lock."""
    prepare_sqlite_files(url)
    engine = sa_create_engine(
        make_url(url).set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0
    )
    _tune_sqlite(
        engine, foreign_keys=True, read_only=False, poll_lock=True, busy_timeout_ms=busy_timeout_ms
    )
    return engine


# The database holds queued mail and the SRS secret: for its owner alone.
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def prepare_sqlite_files(url: str) -> None:
    """Create the database's directory (0700) and file (0600) before SQLite opens it, and
    tighten the modes of the files a former version left readable. SQLite's unix VFS
    creates the -wal, -shm and -journal files with the database file's mode (its
    findCreateFileMode), so an 0600 database keeps them 0600 too. A directory that exists
    is not changed (it may be shared, such as /tmp); a warning says when others can read
    it."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
        directory.chmod(PRIVATE_DIRECTORY)  # mkdir's mode passes through the umask
    elif directory.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) and not _is_sticky(directory):
        log.warning("%s is open to other users; mailroute needs it for itself alone", directory)
    # An empty file, which SQLite takes for a new database; another process may have
    # made it first.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            if companion.stat().st_mode & 0o777 != PRIVATE_FILE:
                companion.chmod(PRIVATE_FILE)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("%s is not ours to make private (mode 0600)", companion)


def _is_sticky(directory: Path) -> bool:
    """/tmp and its like: shared by design, each user's files their own."""
    return bool(directory.stat().st_mode & stat.S_ISVTX)


def _tune_sqlite(
    engine: AsyncEngine | Engine,
    *,
    foreign_keys: bool,
    read_only: bool,
    poll_lock: bool = False,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> None:
    """``poll_lock``: wait for the write lock by polling it finely (begin_immediate) rather
    than in SQLite's busy handler; only where a blocking wait is allowed (a sync engine in
    a thread of its own), never on the event loop."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _configure(
            dbapi_connection,
            foreign_keys=foreign_keys,
            read_only=read_only,
            busy_timeout_ms=0 if poll_lock else busy_timeout_ms,
        )

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that later writes
        # can fail at once with SQLITE_BUSY instead of waiting for busy_timeout.
        if poll_lock:
            try:
                begin_immediate(connection.connection.dbapi_connection, busy_timeout_ms / 1000)
            except sqlite3.Error as exc:
                # SQLAlchemy does not wrap what a begin listener raises: callers catch
                # its exceptions (the SMTP server answers 451 to an OperationalError).
                raise _wrapped(exc) from exc
        else:
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _configure(
    dbapi_connection: Any, *, foreign_keys: bool, read_only: bool, busy_timeout_ms: int
) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit is fsync'd, even in WAL mode; an accepted message survives
    # power loss, not only a killed process.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    if read_only:
        cursor.execute("PRAGMA query_only=ON")
    cursor.close()
    # SQLite's lower() folds ASCII only; searches must fold "Ä" as PostgreSQL does.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def begin_immediate(connection: sqlite3.Connection, timeout: float) -> None:
    """BEGIN IMMEDIATE, waiting up to ``timeout`` seconds for another process's write lock,
    in steps of at most a millisecond. SQLite's own busy handler sleeps 1, 2, 5, 10, 15,
    20, 25... ms between tries: with the SMTP processes and the worker each committing
    every few milliseconds for well under one, a writer slept through most of the time the
    lock stood free."""
    deadline = time.monotonic() + timeout
    pause = LOCK_POLL_FIRST
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # any BUSY_* as well
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, LOCK_POLL_MAX)


def _wrapped(exc: sqlite3.Error) -> DBAPIError:
    kind = OperationalError if isinstance(exc, sqlite3.OperationalError) else DBAPIError
    return kind("BEGIN IMMEDIATE", None, exc)


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block ends, rolls back if it raises."""
    async with sessionmaker() as session, session.begin():
        yield session
