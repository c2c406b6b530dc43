"""Message content into and out of SQLite by incremental BLOB I/O.

Bound as a parameter, a 25 MiB blob is copied twice inside SQLite (the bound value, then the
record built from it), and read back twice (the value assembled from its overflow pages,
then Python's bytes). SQLite's incremental I/O (sqlite3_blob_open) writes into the pages
from our buffer and reads out of them into the bytes returned: the content is held once.
The row is inserted with zeroblob(size), which SQLite writes without allocating it.
Contents under INCREMENTAL_FROM, nearly all mail, go the usual way.

Only where the session runs on the standard library's sqlite3 (the SMTP server's group
commit and the worker in ``serve``): elsewhere (aiosqlite, PostgreSQL) incremental() is None
and the column is bound and read as usual. app.db.content chooses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.db.models import Message

TABLE, COLUMN = "messages", "content"
# Below this a content is bound and read as usual: SQLite's copies of it cost less than
# the three calls of opening, writing or reading, and closing a blob.
INCREMENTAL_FROM = 256 * 1024


def incremental(session: Session) -> sqlite3.Connection | None:
    """The sqlite3 connection under ``session``'s transaction, if that is what it runs on."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    driver = session.connection().connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


def write(
    connection: sqlite3.Connection, contents: Iterable[tuple[int, bytes | bytearray]]
) -> None:
    """Fill each message row's zeroblob (inserted at the content's size) with its content."""
    for rowid, content in contents:
        with connection.blobopen(TABLE, COLUMN, rowid) as blob:
            blob.write(content)


def read(connection: sqlite3.Connection, rowids: Sequence[int]) -> dict[int, bytes]:
    """Each message's content by row id."""
    contents = {}
    for rowid in rowids:
        with connection.blobopen(TABLE, COLUMN, rowid, readonly=True) as blob:
            contents[rowid] = blob.read()
    return contents


def load(session: Session, connection: sqlite3.Connection, messages: dict[int, Message]) -> None:
    """Fill in the deferred content of ``messages`` (by id): the small ones in one query,
    the large ones by incremental BLOB I/O, each straight into its bytes."""
    large = {i for i, m in messages.items() if m.size >= INCREMENTAL_FROM}
    small = [i for i in messages if i not in large]
    contents = read(connection, sorted(large))
    if small:
        query = select(Message.id, Message.content).where(Message.id.in_(small))
        for rowid, content in session.execute(query):
            contents[rowid] = content
    for rowid, content in contents.items():
        set_committed_value(messages[rowid], "content", content)
