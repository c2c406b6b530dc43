"""The DATA text decoder (app.smtp.data.MessageText): however the octets are cut into
blocks, it must find the end of data, remove the transparency dots and refuse exactly what
a line-by-line reading (aiosmtpd's, and RFC 5321 4.5.2's) would.

Generated streams are deterministic (derandomize) and keep no example database.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.message import MAX_LINE_OCTETS
from app.smtp.data import MessageText, Refusal

LIMIT = 5000
TRAILER = b"NOOP\r\nQUIT\r\n"  # pipelined after the end of data: never part of the message


def line_by_line(stream: bytes, limit: int | None) -> tuple[bytes, set[Refusal], int]:
    """The reference: the message, the refusals that apply, and where the end of data
    ends; lines are what ends in CRLF (readuntil), the first "." alone ends the text."""
    lines: list[bytes] = []
    position = 0
    while True:
        end = stream.index(b"\r\n", position) + 2
        line = stream[position:end]
        position = end
        if line == b".\r\n":
            break
        lines.append(line)
    content = b"".join(line[1:] if line.startswith(b".") else line for line in lines)
    refusals = set()
    if limit is not None and sum(len(line) for line in lines) > limit:
        refusals.add(Refusal.TOO_MUCH)
    if re.search(rb"\r(?!\n)|(?<!\r)\n", content):
        refusals.add(Refusal.BARE_NEWLINE)
    if any(len(line) + 2 > MAX_LINE_OCTETS for line in content.split(b"\r\n")[:-1]) or re.search(
        rb"^[^\r\n]{%d}" % (MAX_LINE_OCTETS - 1), content, re.MULTILINE
    ):
        refusals.add(Refusal.LINE_TOO_LONG)
    return content, refusals, position


def decoded(stream: bytes, cuts: list[int], limit: int | None) -> tuple[MessageText, int]:
    """Feed ``stream`` cut at ``cuts``; what the decoder made and how much it used."""
    text = MessageText(b"Received: ours\r\n", limit)
    used = 0
    edges = sorted({0, *(c % (len(stream) + 1) for c in cuts), len(stream)})
    for start, stop in zip(edges, edges[1:], strict=False):
        taken = text.feed(stream[start:stop])
        used += taken
        if text.done:
            break
        assert taken == stop - start
    return text, used


PIECES = st.sampled_from(
    [b"a", b"xyz", b".", b"..", b"\r", b"\n", b"\r\n", b" ", b"b" * 300, b"c" * 998, b"\x00"]
)
LINE = st.lists(PIECES, max_size=6).map(b"".join)
MESSAGE = st.lists(LINE, max_size=12).map(lambda lines: b"".join(x + b"\r\n" for x in lines))


@settings(
    max_examples=1500,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    body=MESSAGE,
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=8),
    limit=st.sampled_from([None, LIMIT]),
)
def test_message_text_reads_as_line_by_line(
    body: bytes, cuts: list[int], limit: int | None
) -> None:
    stream = body + b".\r\n" + TRAILER
    content, refusals, end = line_by_line(stream, limit)
    text, used = decoded(stream, cuts, limit)
    assert text.done
    assert used == end  # nothing pipelined after the end of data was taken
    if refusals:
        assert text.refusal in refusals
        assert text.content == b""
    else:
        assert text.refusal is None
        assert bytes(text.content) == b"Received: ours\r\n" + content


def test_message_text_empty_message_ends_at_once() -> None:
    text = MessageText(b"T\r\n")
    assert text.feed(b".\r\nQUIT\r\n") == 3
    assert text.done and text.content == b"T\r\n"


def test_message_text_dot_line_split_across_blocks_ends_it() -> None:
    text = MessageText()
    for block in (b"one\r", b"\n.", b"\r", b"\nMAIL"):
        text.feed(block)
    assert text.done and text.content == b"one\r\n"


def test_message_text_lone_dot_after_bare_lf_does_not_end_it() -> None:
    # The smuggling sequence: <LF>.<CRLF> is not the end of data (RFC 5321 4.1.1.4).
    text = MessageText()
    text.feed(b"one\n.\r\ntwo\r\n")
    assert not text.done
    assert text.feed(b".\r\n") == 3
    assert text.refusal is Refusal.BARE_NEWLINE


def test_message_text_endless_line_keeps_no_text() -> None:
    text = MessageText()
    for _ in range(100):
        text.feed(b"y" * 65536)
    assert text.refusal is Refusal.LINE_TOO_LONG
    assert len(text._partial) <= 1 and text.content == b""
    text.feed(b"\r\n.\r\n")
    assert text.done


@pytest.mark.parametrize("line", [b"." + b"y" * 998 + b"\r\n", b"y" * 998 + b"\r\n"])
def test_message_text_line_of_1000_octets_unstuffed_is_taken(line: bytes) -> None:
    text = MessageText()
    text.feed(line + b".\r\n")
    assert text.refusal is None and text.content == line.removeprefix(b".")


def test_message_text_over_the_limit_is_too_much() -> None:
    text = MessageText(size_limit=10)
    text.feed(b"0123456789\r\n.\r\n")
    assert text.refusal is Refusal.TOO_MUCH and text.content == b""


def test_message_text_dot_ending_a_long_line_is_not_a_line_start() -> None:
    # The over-long line is dropped but for its last octet, a "." here: the <CRLF> after
    # it ends that line, and only the next "." alone ends the text.
    text = MessageText()
    text.feed(b"y" * 1500 + b".")
    assert text.feed(b"\r\n.\r\nNOOP\r\n") == 5
    assert text.done and text.refusal is Refusal.LINE_TOO_LONG


def test_message_text_line_after_a_long_line_starts_a_line() -> None:
    text = MessageText()
    for block in (b"y" * 1500, b"\r\n"):
        text.feed(block)
    assert text.feed(b".\r\n") == 3
    assert text.done
