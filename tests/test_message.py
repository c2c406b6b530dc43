"""The pure functions on message bytes that decide what the SMTP server refuses."""

from __future__ import annotations

import pytest

from app import message

BARE = {
    "lf": b"a\nb\r\n",
    "cr": b"a\rb\r\n",
    "cr_before_crlf": b"a\r\r\n",
    "lf_first": b"\na\r\n",
    "cr_last": b"a\r\n\r",
}


@pytest.mark.parametrize("content", BARE.values(), ids=BARE.keys())
def test_has_bare_newline(content: bytes) -> None:
    assert message.has_bare_newline(content)


def test_has_bare_newline_not_for_crlf_lines() -> None:
    assert not message.has_bare_newline(b"a\r\n\r\nb\r\n.\r\n")


def test_has_long_line_at_1000_octets_with_crlf_is_false() -> None:
    assert not message.has_long_line(b"x\r\n" + b"y" * 998 + b"\r\nz\r\n")


def test_has_long_line_at_1001_octets_with_crlf_is_true() -> None:
    assert message.has_long_line(b"x\r\n" + b"y" * 999 + b"\r\n")


def test_message_id_has_no_control_characters() -> None:
    content = b"Message-ID: <a\x00b\x1b@example.org>\r\n\r\nbody\r\n"
    assert message.message_id(content) == "<a?b?@example.org>"
