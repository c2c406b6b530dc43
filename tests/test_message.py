"""app.message: what the SMTP server refuses in content, and our Received field keeping
whatever the client sent inside it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import message

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BODY = b"From: a@sender.example\r\nTo: shop@example.org\r\nSubject: hi\r\n\r\nHello\r\n"
INJECTIONS = {
    "CRLF": "x\r\nBcc: victim@evil.example",
    "bare LF": "x\nBcc: victim@evil.example",
    "bare CR": "x\rBcc: victim@evil.example",
    "blank line": "x\r\n\r\nBody: starts here",
    "header-like": "x Bcc: victim@evil.example",
    "NUL": "x\x00y",
    "NEL": "x\x85Bcc: y",
    "line separator": "x\u2028Bcc: y",
    "non-ASCII": "\u00e9vil.example",
    "long": "a" * 5000,
}


def received(**overrides: str | None) -> bytes:
    fields: dict[str, str | None] = {
        "helo": "client.example",
        "client_ip": "192.0.2.1",
        "recipient": "shop@example.org",
    }
    fields.update(overrides)
    return message.received_header(
        hostname="mx.mailroute.example",
        protocol="ESMTP",
        queue_id="abc123",
        now=NOW,
        **fields,  # type: ignore[arg-type]
    )


def assert_one_clean_field(trace: bytes) -> None:
    parsed = BytesParser(policy=policy.SMTP).parsebytes(trace + BODY)
    assert parsed.keys() == ["Received", "From", "To", "Subject"]
    assert parsed.get_content().startswith("Hello")
    lines = trace.split(b"\r\n")
    assert lines[-1] == b""  # ends with CRLF, and no other line ending anywhere:
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= 998 for line in lines)  # RFC 5322 2.1.1
    assert all(line.startswith(b"\t") for line in lines[1:-1])  # continuation lines only
    # Nor anything another reader could take for a line end (NEL, U+2028) or choke on (NUL).
    assert trace.decode("utf-8").replace("\r\n\t", " ").removesuffix("\r\n").isprintable()


@pytest.mark.parametrize("field", ["helo", "client_ip", "recipient"])
@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_received_header_client_text_stays_in_one_field(field: str, text: str) -> None:
    assert_one_clean_field(received(**{field: text}))


@pytest.mark.parametrize("field", ["helo", "client_ip"])
@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_received_header_helo_and_ip_are_ascii(field: str, text: str) -> None:
    assert received(**{field: text}).isascii()


def test_received_header_keeps_a_non_ascii_recipient() -> None:
    # SMTPUTF8 (RFC 6531): an internationalized recipient is written as it is.
    trace = received(recipient="j\u00f6rg@example.org")

    assert "\tfor <j\u00f6rg@example.org>;".encode() in trace


def test_received_header_without_helo_or_recipient() -> None:
    trace = received(helo=None, recipient=None)

    assert trace.startswith(b"Received: from unknown ([192.0.2.1])\r\n")
    assert b"\tfor " not in trace


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a\rb", True), ("a\x00", True), ("a\u2028", True), ("a\x85", True), ("j\u00f6rg", False)],
)
def test_breaks_lines(text: str, expected: bool) -> None:
    assert message.breaks_lines(text) is expected


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


SCAN_PIECES = st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"y" * 400, b"z" * 999])


@settings(max_examples=2000, derandomize=True, database=None)
@given(content=st.lists(SCAN_PIECES, max_size=8).map(b"".join))
def test_line_scans_answer_as_the_regular_expressions(content: bytes) -> None:
    # The counting and splitting shortcuts against the plain definitions.
    assert message.has_bare_newline(content) == bool(re.search(rb"\r(?!\n)|(?<!\r)\n", content))
    long_line = re.search(rb"^[^\r\n]{999}", content, re.MULTILINE)
    assert message.has_long_line(content) == bool(long_line)


@pytest.mark.parametrize(
    ("head", "domains"),
    [
        (b"From: Alice <alice@Example.ORG>\r\n", ["example.org"]),
        (b"from:alice@example.org.\r\n", ["example.org"]),
        (b"From: Alice\r\n <alice@folded.example>\r\n", ["folded.example"]),
        (b'From: "bob@fake.example" <bob@real.example>\r\n', ["real.example"]),
        (b"From: a@one.example, b@two.example\r\n", ["one.example", "two.example"]),
        (b"From: a@one.example\r\nFrom: b@two.example\r\n", ["one.example", "two.example"]),
        (b"Sender: a@one.example\r\nFrom-Name: x@y.example\r\n", []),
        (b"Subject: no author\r\n", []),
    ],
)
def test_author_domains(head: bytes, domains: list[str]) -> None:
    content = b"Received: from x\r\n\tby y\r\n" + head + b"\r\nFrom: body@not.header\r\n"
    assert message.author_domains(content) == domains
