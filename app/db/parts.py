"""Large message content on PostgreSQL, in slices (the message_parts table).

asyncpg encodes a bytea parameter into its write buffer whole, and gathers a bytea result
whole in its read buffer before decoding it: with the caller's own copy, a 25 MiB message
cost the SMTP process and the worker three times its size each. From PARTS_FROM octets
the message row keeps an empty ``content`` and the content goes into slices of
PART_OCTETS, each written, then read, by a statement of its own, so that the driver never
holds more than one. The reader fills one buffer of the message's size.

Only on PostgreSQL (used() says where; app.db.content chooses): SQLite has incremental
BLOB I/O (app.db.blobs).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.db.models import Message, MessagePart

PART_OCTETS = 1024 * 1024
PARTS_FROM = PART_OCTETS  # smaller contents stay in the message row

_INSERT = insert(MessagePart)
_READ = select(MessagePart.data).where(
    MessagePart.message_id == bindparam("message_id"), MessagePart.seq == bindparam("seq")
)


def used(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def in_parts(message: Message) -> bool:
    """Whether ``message`` keeps its content in parts (its row's content is empty)."""
    return message.size > 0 and not message.content


def write(session: Session, message_id: int, content: bytes | bytearray) -> None:
    """Store ``content`` as the parts of message ``message_id``, a statement each."""
    view = memoryview(content)
    for seq, start in enumerate(range(0, len(content), PART_OCTETS)):
        session.execute(
            _INSERT,
            {"message_id": message_id, "seq": seq, "data": view[start : start + PART_OCTETS]},
        )


def load(session: Session, messages: Iterable[Message]) -> None:
    """Fill in the content of those of ``messages`` that keep it in parts, each into one
    buffer of its size (a bytearray: turning it into bytes would copy it whole)."""
    for message in messages:
        if not in_parts(message):
            continue
        content = bytearray(message.size)
        start = 0
        for seq in range(-(-message.size // PART_OCTETS)):
            data = session.scalar(_READ, {"message_id": message.id, "seq": seq})
            if data is None:
                raise LookupError(f"message {message.id} lacks part {seq}")
            content[start : start + len(data)] = data
            start += len(data)
        if start != message.size:
            raise LookupError(f"message {message.id} has {start} of {message.size} octets")
        set_committed_value(message, "content", content)
