"""DSNs (RFC 3464), read back with the email package as a mail client would."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

import pytest

from app.delivery import dsn

HOSTNAME = "mx.mailroute.example"
SENDER = "alice@sender.example"
ALIAS = "shop@example.org"
DESTINATION = "me@inbox.example"
ARRIVAL = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
ORIGINAL = (
    b"Received: from client.example ([192.0.2.1])\r\n"
    b"\tby mx.mailroute.example (mailroute) with ESMTP id abc123\r\n"
    b"\tfor <shop@example.org>; Wed, 01 May 2024 12:00:00 +0000\r\n"
    b"From: Alice <alice@sender.example>\r\n"
    b"To: shop@example.org\r\n"
    b"Subject: the order\r\n"
    b"Message-ID: <1@sender.example>\r\n"
    b"\r\n"
    b"Please send it to my home.\r\n"
)


def build(
    *,
    diagnostic: str = "550 5.1.1 <me@inbox.example>: Recipient address rejected",
    status: str = "5.1.1",
    original: bytes = ORIGINAL,
) -> tuple[bytes, str]:
    return dsn.build(
        hostname=HOSTNAME,
        sender=SENDER,
        original=original,
        arrival=ARRIVAL,
        failures=[dsn.Failure(ALIAS, DESTINATION, status, diagnostic)],
        now=NOW,
    )


def parse(content: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)
    return message


def status_blocks(report: EmailMessage) -> list[Message]:
    """The delivery-status part's field groups: per message, then per recipient."""
    part = list(report.iter_parts())[1]
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return blocks


@pytest.fixture
def report() -> EmailMessage:
    return parse(build()[0])


def test_build_is_a_multipart_report_of_delivery_status(report: EmailMessage) -> None:
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"


def test_build_has_text_status_and_headers_parts(report: EmailMessage) -> None:
    assert [p.get_content_type() for p in report.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]


def test_build_goes_from_the_mailer_daemon_to_the_sender(report: EmailMessage) -> None:
    assert report["From"] == f"Mail Delivery System <MAILER-DAEMON@{HOSTNAME}>"
    assert [a.addr_spec for a in report["To"].addresses] == [SENDER]
    assert report["Auto-Submitted"] == "auto-replied"  # RFC 3834 5.1


def test_build_returns_the_message_id_it_wrote() -> None:
    content, message_id = build()
    assert parse(content)["Message-ID"] == message_id
    assert message_id.endswith(f"@{HOSTNAME}>")


def test_build_per_message_fields(report: EmailMessage) -> None:
    per_message = status_blocks(report)[0]
    assert per_message["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert per_message["Arrival-Date"] == "Wed, 01 May 2024 12:00:00 +0000"


def test_build_final_recipient_is_the_alias(report: EmailMessage) -> None:
    per_recipient = status_blocks(report)[1]
    assert per_recipient["Final-Recipient"] == f"rfc822; {ALIAS}"
    assert per_recipient["Original-Recipient"] == f"rfc822; {ALIAS}"


def test_build_status_action_and_diagnostic(report: EmailMessage) -> None:
    per_recipient = status_blocks(report)[1]
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"] == (
        f"smtp; 550 5.1.1 <{ALIAS}>: Recipient address rejected"
    )


def test_build_never_names_the_destination() -> None:
    content, _ = build(diagnostic="550 5.1.1 <ME@Inbox.Example>: no mailbox me@inbox.example")
    assert DESTINATION.encode() not in content.lower()


def test_build_text_part_names_the_alias(report: EmailMessage) -> None:
    text = list(report.iter_parts())[0].get_content()
    assert f"<{ALIAS}>" in text
    assert HOSTNAME in text


def test_build_includes_the_original_headers_only(report: EmailMessage) -> None:
    headers = list(report.iter_parts())[2]
    text = headers.get_payload(decode=True)
    assert isinstance(text, bytes)
    assert text.startswith(b"Received: from client.example")
    assert b"Subject: the order\r\n" in text
    assert b"Message-ID: <1@sender.example>\r\n" in text
    assert b"Please send it" not in text


def test_build_uses_crlf_line_endings_only() -> None:
    content, _ = build()
    assert b"\r\n" in content
    assert b"\n" not in content.replace(b"\r\n", b"")
    assert b"\r" not in content.replace(b"\r\n", b"")


def test_build_turns_bare_lf_of_the_original_into_crlf() -> None:
    content, _ = build(original=ORIGINAL.replace(b"\r\n", b"\n"))
    assert b"\n" not in content.replace(b"\r\n", b"")
    assert b"Subject: the order\r\n" in content


def test_build_keeps_a_multiline_diagnostic_on_one_line() -> None:
    content, _ = build(diagnostic="550 5.7.1 first line\r\nX-Injected: yes\n\tmore")
    per_recipient = status_blocks(parse(content))[1]
    assert per_recipient["X-Injected"] is None
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.7.1 first line X-Injected: yes more"


def test_build_expired_delivery_reports_its_status() -> None:
    content, _ = build(diagnostic="451 4.3.0 try later", status="4.4.7")
    per_recipient = status_blocks(parse(content))[1]
    assert per_recipient["Status"] == "4.4.7"
    assert per_recipient["Action"] == "failed"


def test_build_one_group_per_failure() -> None:
    content, _ = dsn.build(
        hostname=HOSTNAME,
        sender=SENDER,
        original=ORIGINAL,
        arrival=ARRIVAL,
        failures=[
            dsn.Failure(ALIAS, DESTINATION, "5.1.1", "550 5.1.1 unknown"),
            dsn.Failure("team@example.org", "other@inbox.example", "5.2.2", "552 5.2.2 full"),
        ],
        now=NOW,
    )
    blocks = status_blocks(parse(content))
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        f"rfc822; {ALIAS}",
        "rfc822; team@example.org",
    ]
    assert b"other@inbox.example" not in content


# --- nothing the sender or the remote server chose adds a header field ----------------------

INJECTIONS = {
    "CRLF": "x\r\nBcc: victim@evil.example",
    "bare LF": "x\nBcc: victim@evil.example",
    "bare CR": "x\rBcc: victim@evil.example",
    "blank line": "x\r\n\r\nX-Body: starts here",
    "NUL": "x\x00Bcc: y",
    "NEL": "x\x85Bcc: y",
    "line separator": "x\u2028Bcc: y",
}
TOP_FIELDS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
]
PER_RECIPIENT_FIELDS = [
    "Original-Recipient",
    "Final-Recipient",
    "Action",
    "Status",
    "Diagnostic-Code",
    "Last-Attempt-Date",
]


def build_with(
    *, sender: str = SENDER, alias: str = ALIAS, diagnostic: str = "550 5.1.1 no"
) -> bytes:
    content, _ = dsn.build(
        hostname=HOSTNAME,
        sender=sender,
        original=ORIGINAL,
        arrival=ARRIVAL,
        failures=[dsn.Failure(alias, DESTINATION, "5.1.1", diagnostic)],
        now=NOW,
    )
    return content


def assert_only_our_fields(content: bytes) -> EmailMessage:
    report = BytesParser(policy=policy.SMTP).parsebytes(content)
    assert isinstance(report, EmailMessage)
    assert report.keys() == TOP_FIELDS
    assert [p.get_content_type() for p in report.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    per_message, per_recipient = status_blocks(report)
    assert per_message.keys() == ["Reporting-MTA", "Arrival-Date"]
    assert per_recipient.keys() == PER_RECIPIENT_FIELDS
    lines = content.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert all(len(line) <= 998 for line in lines)  # RFC 5322 2.1.1
    return report


@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_build_sender_adds_no_field(text: str) -> None:
    report = assert_only_our_fields(build_with(sender=f'"{text}"@sender.example'))

    assert str(report["To"]).isprintable()


@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_build_alias_adds_no_field(text: str) -> None:
    report = assert_only_our_fields(build_with(alias=f'"{text}"@example.org'))

    per_recipient = status_blocks(report)[1]
    assert per_recipient["Final-Recipient"].isprintable()


@pytest.mark.parametrize("text", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_build_diagnostic_adds_no_field(text: str) -> None:
    report = assert_only_our_fields(build_with(diagnostic=f"550 5.7.1 {text}"))

    per_recipient = status_blocks(report)[1]
    assert per_recipient["Diagnostic-Code"].isprintable()
    readable = list(report.iter_parts())[0].get_content()
    assert all(line.isprintable() for line in readable.split("\r\n"))


def test_build_non_ascii_diagnostic_is_escaped_in_the_status_part() -> None:
    # RFC 3464 2.1.2: status fields are ASCII; RFC 6533 3 writes the rest as \x{HHHH}.
    report = assert_only_our_fields(build_with(diagnostic="550 5.1.1 Postfach unbekannt \u00fc"))

    per_recipient = status_blocks(report)[1]
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 Postfach unbekannt \\x{00FC}"
    text = list(report.iter_parts())[0].get_content()
    assert "Postfach unbekannt \u00fc" in text  # the human-readable part keeps it (UTF-8)


def test_build_non_ascii_alias_is_a_utf8_address() -> None:
    report = assert_only_our_fields(build_with(alias="j\u00f6rg@example.org"))

    per_recipient = status_blocks(report)[1]
    assert per_recipient["Final-Recipient"] == "utf-8; j\\x{00F6}rg@example.org"


def test_build_long_diagnostic_keeps_lines_short() -> None:
    assert_only_our_fields(build_with(diagnostic="550 " + "\u00fc" * 2000))


def test_build_status_part_is_ascii() -> None:
    content = build_with(alias="j\u00f6rg@example.org", diagnostic="550 \u00fc\u2028\x00")
    status_part = content.split(b"Content-Type: message/delivery-status")[1].split(b"--mailroute")[
        0
    ]

    assert status_part.isascii()


def test_build_many_long_recipients_keep_lines_short() -> None:
    content, _ = dsn.build(
        hostname=HOSTNAME,
        sender=SENDER,
        original=ORIGINAL,
        arrival=ARRIVAL,
        failures=[
            dsn.Failure(f"{'x' * 60}{n}@example.org", DESTINATION, "5.1.1", "550 no")
            for n in range(30)
        ],
        now=NOW,
    )

    assert all(len(line) <= 998 for line in content.split(b"\r\n"))


# Hiding addresses in a remote's reply, in time linear in its length


@pytest.mark.parametrize(
    ("reply", "hidden"),
    [
        ("550 refused for 192.0.2.7.", "550 refused for [address hidden]."),
        ("550 from [IPv6:2001:db8::25] no", "550 from [IPv6:[address hidden]] no"),
        ("421 198.51.100.4:25 busy", "421 [address hidden]:25 busy"),
        ("550 fe80::1 and ::1 refused", "550 [address hidden] and [address hidden] refused"),
        ("451 4.3.0 try at 12:30:05, queue 0a:ff", "451 4.3.0 try at 12:30:05, queue 0a:ff"),
    ],
)
def test_hide_destination_hides_ip_addresses_only(reply: str, hidden: str) -> None:
    assert dsn.hide_destination(reply, DESTINATION, ALIAS) == hidden


def test_hide_destination_pattern_has_one_unbounded_repetition() -> None:
    # Two unbounded runs side by side (the old "[0-9a-f:]*[0-9a-f]::[0-9a-f:]*") make the
    # engine try every split of a long hex-and-colon line: quadratic time on the event
    # loop. One run, taken whole from its start, is linear.
    unbounded = re.findall(r"(?<!\\)[*+]|\{\d+,\}", dsn._ADDRESS_LIKE.pattern)
    assert len(unbounded) == 1, unbounded


def test_build_quotes_at_most_64_kib_of_header_cut_at_a_field() -> None:
    fields = b"".join(
        b"X-Filler-%d: %s\r\n\t%s\r\n" % (n, b"a" * 480, b"b" * 400) for n in range(1200)
    )
    content, _ = build(original=ORIGINAL.replace(b"\r\n\r\n", b"\r\n" + fields + b"\r\n", 1))
    [quoted] = [p for p in parse(content).walk() if p.get_content_type() == "text/rfc822-headers"]
    headers = quoted.get_payload(decode=True)
    assert isinstance(headers, bytes)
    assert len(fields) > 1_000_000
    assert 0 < len(headers) <= dsn.MAX_QUOTED_HEADER
    assert headers.startswith(b"Received: ")
    assert headers.endswith(b"\t" + b"b" * 400 + b"\r\n")


def test_build_diagnostic_encoded_word_stays_literal() -> None:
    # The email package's header classes decode RFC 2047 encoded words, and Python before
    # 3.11.10 writes a decoded CRLF as it is: the DSN's fields must never go through them.
    encoded = "=?utf-8?q?=0D=0AX-Injected:_yes?="
    content = build_with(diagnostic=f"550 5.7.1 {encoded}")

    assert_only_our_fields(content)
    assert f"Diagnostic-Code: smtp; 550 5.7.1 {encoded}\r\n".encode() in content
