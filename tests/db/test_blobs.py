"""Message content by SQLite's incremental BLOB I/O (app.db.blobs): used where the session
runs on the standard library's sqlite3 (the SMTP server's group commit, the worker in
``serve``), byte-exact both ways, and after the migrations content is the last column (the
zeroblob it is inserted as stays unallocated only there)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db import blobs
from app.db.engine import create_sqlite_writer
from app.db.models import Message
from app.routing.srs import Srs
from app.services import inbound, queue
from tests.conftest import HOSTNAME, sqlite_url
from tests.db.arrivals import arrival

NOW = datetime(2030, 1, 1, tzinfo=UTC)
# Every octet value, CR and LF alone, and more than a page: what is stored is what came.
SMALL = bytearray(b"Received: ours\r\n" + bytes(range(256)) * 40 + b"\r\n.\r\n")
# Written and read by blob I/O (INCREMENTAL_FROM and over); the small one is bound.
LARGE = SMALL * (blobs.INCREMENTAL_FROM // len(SMALL) + 1)


@pytest.fixture
def writer(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    """The migrated SQLite database, through the writer the SMTP server commits with."""
    path = tmp_path / "blobs.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_sqlite_writer(sqlite_url(path))
    yield engine
    engine.dispose()


def stored_columns(path: str) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[1] for row in connection.execute("PRAGMA table_info(messages)")]


def test_blobs_incremental_on_the_sqlite3_writer(writer: Engine) -> None:
    with Session(writer) as session:
        assert isinstance(blobs.incremental(session), sqlite3.Connection)


async def test_blobs_not_incremental_elsewhere(session: object) -> None:
    # aiosqlite and asyncpg: the column is bound and read as usual.
    connections = []
    await session.run_sync(lambda sync: connections.append(blobs.incremental(sync)))  # type: ignore[attr-defined]
    assert connections == [None]


@pytest.mark.parametrize("sizes", [(LARGE,), (SMALL,), (SMALL, LARGE, SMALL)])
def test_blobs_store_and_claim_keep_content_byte_exact(
    writer: Engine, sizes: tuple[bytearray, ...]
) -> None:
    srs = Srs("blobs-test-secret-0123456789abcdef", HOSTNAME)
    with Session(writer) as session, session.begin():
        stored = inbound.store(
            session,
            [arrival(content) for content in sizes],
            srs=srs,
            queue_lifetime=timedelta(days=1),
            now=NOW,
        )
    with Session(writer) as session, session.begin():
        # Read as usual, not through app.db.blobs: the rows hold exactly the contents.
        for content, result in zip(sizes, stored, strict=True):
            row = session.get(Message, result.message_id)
            assert row is not None and (row.content, row.size) == (bytes(content), len(content))
    ids = [i for result in stored for i in result.delivery_ids]
    with Session(writer) as session, session.begin():
        claimed = queue.claim(session, ids, "w", NOW, NOW + timedelta(minutes=1))
        by_id = {d.id: d.message.content for d in claimed}
        assert [by_id[i] for i in ids] == [bytes(content) for content in sizes]
        assert all(isinstance(content, bytes) for content in by_id.values())


def test_blobs_content_is_the_last_column_after_migrating(writer: Engine) -> None:
    database = writer.url.database
    assert database is not None
    assert stored_columns(database)[-1] == "content"
