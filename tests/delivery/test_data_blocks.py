"""DATA written a block at a time (app.delivery.data.data_blocks): the octets on the wire
must be exactly what aiosmtplib's data() would send, however the blocks fall.

Generated texts are deterministic (derandomize) and keep no example database.
"""

from __future__ import annotations

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from app.delivery.data import data_blocks

PIECES = st.sampled_from([b"a", b"xy", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\xc3\xa9"])
TEXT = st.lists(PIECES, max_size=40).map(b"".join)


def as_aiosmtplib_sends(content: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(content)) + b".\r\n"


@settings(max_examples=2000, derandomize=True, database=None)
@given(content=TEXT, size=st.integers(min_value=1, max_value=12))
def test_data_blocks_send_what_aiosmtplib_sends(content: bytes, size: int) -> None:
    assert b"".join(data_blocks(content, size)) == as_aiosmtplib_sends(content)


def test_data_blocks_end_lines_within_the_block_size() -> None:
    content = b"".join(b"line %d\r\n" % n for n in range(10_000))
    blocks = list(data_blocks(content, 4096))
    assert len(blocks) > 10
    assert all(block.endswith(b"\r\n") for block in blocks)
    assert blocks[-1].endswith(b"\r\n.\r\n")
    assert max(len(block) for block in blocks) < 4096 + 20


def test_data_blocks_leave_a_plain_message_as_it_is() -> None:
    content = b"Subject: x\r\n\r\nbody\r\n"
    assert list(data_blocks(content)) == [content + b".\r\n"]


FIELDS = st.lists(
    st.sampled_from([b"X-A: 1\r\n", b"DKIM-Signature: v=1;\r\n\tb=x\r\n"]), max_size=3
)


@settings(max_examples=1000, derandomize=True, database=None)
@given(prefix=FIELDS.map(b"".join), content=TEXT, size=st.integers(min_value=1, max_value=12))
def test_data_blocks_send_the_prefix_as_part_of_the_text(
    prefix: bytes, content: bytes, size: int
) -> None:
    # Our header fields ahead of the content: what a client sending both as one text sends.
    sent = b"".join(data_blocks(content, size, prefix=prefix))
    assert sent == as_aiosmtplib_sends(prefix + content)


def test_data_blocks_send_the_prefix_with_the_first_block() -> None:
    content = b"Subject: x\r\n\r\nbody\r\n"
    assert list(data_blocks(content, prefix=b"X-A: 1\r\n")) == [b"X-A: 1\r\n" + content + b".\r\n"]
