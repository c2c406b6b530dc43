"""A message's content into the database and back out, whatever the database: the one
place that chooses how (services never ask which database they are on).

Most contents are bound and read as a column like any other. A large one goes where its
database holds it once rather than in copies: on the standard library's sqlite3, into a
zeroblob of its size by incremental BLOB I/O (app.db.blobs); on PostgreSQL, in slices of
the message_parts table (app.db.parts). Everywhere else (aiosqlite) it is bound as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, inspect
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.interfaces import ORMOption

from app.db import blobs, parts
from app.db.models import Delivery, Message


class _Place(Enum):
    ROW = "row"  # bound in the message row
    BLOB = "blob"  # a zeroblob in the row, then written into it (app.db.blobs)
    PARTS = "parts"  # an empty content in the row, the content in app.db.parts


_messages = cast(Table, Message.__table__)
_INSERT = insert(_messages).returning(_messages.c.id, sort_by_parameter_order=True)
_INSERT_RESERVED = (
    insert(_messages)
    .values(content=func.zeroblob(bindparam("content_size")))
    .returning(_messages.c.id, sort_by_parameter_order=True)
)


def insert_messages(
    session: Session, rows: Sequence[dict[str, Any]], contents: Sequence[bytes | bytearray]
) -> list[int]:
    """Insert message rows (every column but ``content``) with their contents, a few
    statements for all; their ids, in order. On sqlite3 a small content is bound, which
    takes fewer calls into SQLite (each hands the GIL to the event loop's thread and back)
    than writing it into its row."""
    places = _places(session, contents)
    ids = [0] * len(rows)
    for reserved in (False, True):
        chosen = [i for i, place in enumerate(places) if (place is _Place.BLOB) is reserved]
        if not chosen:
            continue
        values = [_values(rows[i], contents[i], places[i]) for i in chosen]
        new_ids = session.scalars(_INSERT_RESERVED if reserved else _INSERT, values)
        for i, message_id in zip(chosen, new_ids, strict=True):
            ids[i] = message_id
    reserved_contents = [(ids[i], contents[i]) for i, p in enumerate(places) if p is _Place.BLOB]
    if reserved_contents:
        sqlite = blobs.incremental(session)
        assert sqlite is not None  # _places chose BLOB only on sqlite3
        blobs.write(sqlite, reserved_contents)
    for i, place in enumerate(places):
        if place is _Place.PARTS:
            parts.write(session, ids[i], contents[i])
    return ids


def _places(session: Session, contents: Sequence[bytes | bytearray]) -> list[_Place]:
    if blobs.incremental(session) is not None:
        large, place = blobs.INCREMENTAL_FROM, _Place.BLOB
    elif parts.used(session):
        large, place = parts.PARTS_FROM, _Place.PARTS
    else:
        return [_Place.ROW] * len(contents)
    return [place if len(content) >= large else _Place.ROW for content in contents]


def _values(row: dict[str, Any], content: bytes | bytearray, place: _Place) -> dict[str, Any]:
    if place is _Place.BLOB:
        return {**row, "content_size": len(content)}  # room for it only (_INSERT_RESERVED)
    return {**row, "content": b"" if place is _Place.PARTS else content}


def with_messages(session: Session) -> ORMOption:
    """The loader option for a query of deliveries that brings their messages, for load()
    to complete: on sqlite3 the content is left out of the query, and read by load()."""
    option = selectinload(Delivery.message)
    if blobs.incremental(session) is not None:
        return option.defer(Message.content)
    return option


def load(session: Session, messages: Iterable[Message]) -> None:
    """Fill in the content of ``messages`` where the query that loaded them could not: on
    sqlite3 those whose content it left out (with_messages), on PostgreSQL those that keep
    it in parts."""
    sqlite = blobs.incremental(session)
    if sqlite is None:
        parts.load(session, messages)
        return
    deferred = {m.id: m for m in messages if "content" in inspect(m).unloaded}
    if deferred:
        blobs.load(session, sqlite, deferred)
