"""Client-supplied text (EHLO name, MAIL FROM, RCPT TO) never adds or ends a header field
of what we store. Commands go as raw bytes (smtplib would refuse some of them), and the
stored message is read back with the email package."""

from __future__ import annotations

import socket
from email import policy
from email.parser import BytesParser
from typing import BinaryIO

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Message
from app.smtp import replies
from tests.smtp.conftest import LiveSmtp, in_thread

BODY = (
    b"From: a@sender.example\r\nTo: shop@example.org\r\nSubject: hi\r\n"
    b"Message-ID: <1@sender.example>\r\n\r\nHello\r\n"
)
FIELDS = ["Received", "From", "To", "Subject", "Message-ID"]


def dialogue(live: LiveSmtp, commands: list[bytes]) -> list[bytes]:
    """Send each command line as raw bytes; the replies to each (greeting first)."""
    with socket.create_connection((live.host, live.port), timeout=10) as sock:
        stream = sock.makefile("rwb")
        answers = [read_reply(stream)]
        for command in commands:
            stream.write(command + b"\r\n")
            stream.flush()
            answers.append(read_reply(stream))
        return answers


def read_reply(stream: BinaryIO) -> bytes:
    lines = []
    while True:
        line = stream.readline()
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return b"".join(lines)


async def transaction(live: LiveSmtp, helo: bytes, sender: bytes, rcpt: bytes) -> list[bytes]:
    commands = [b"EHLO " + helo, b"MAIL FROM:" + sender, b"RCPT TO:" + rcpt, b"DATA", BODY + b"."]
    return await in_thread(lambda: dialogue(live, commands))


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Message]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Message)))


def reply_line(constant: str) -> bytes:
    return constant.encode() + b"\r\n"


@pytest.mark.parametrize(
    "helo",
    [
        b"evil\rBcc: victim@evil.example",  # aiosmtpd splits lines at LF: a bare CR stays
        b"\x00nul\x7f",
    ],
    ids=["bare CR", "NUL and DEL"],
)
async def test_ehlo_name_with_a_control_character_is_501(
    smtp_server: LiveSmtp,
    routed: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    helo: bytes,
) -> None:
    answers = await in_thread(lambda: dialogue(smtp_server, [b"EHLO " + helo, b"QUIT"]))

    assert answers[1] == reply_line(replies.S501_BAD_HELO)
    assert answers[2].startswith(b"221 ")
    assert await stored(sessionmaker) == []


@pytest.mark.parametrize(
    "helo",
    [
        b"x Bcc: victim@evil.example",
        b"\xc3\xa9vil.example",
        b"<script>",
        b"a" * 400,
    ],
    ids=["header-like", "non-ASCII", "angle brackets", "long"],
)
async def test_received_ehlo_name_adds_no_field(
    smtp_server: LiveSmtp,
    routed: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    helo: bytes,
) -> None:
    answers = await transaction(smtp_server, helo, b"<a@sender.example>", b"<shop@example.org>")

    assert answers[-1].startswith(b"250 ")
    (message,) = await stored(sessionmaker)
    parsed = BytesParser(policy=policy.SMTP).parsebytes(message.content)
    assert parsed.keys() == FIELDS
    received = str(parsed["Received"]).replace("\t", " ")  # our folding: CRLF TAB
    assert received.startswith("from ")
    assert received.isascii() and received.isprintable()  # no CR, LF, NUL, raw 8-bit


@pytest.mark.parametrize(
    "sender",
    [
        b'<"x\rBcc: victim@evil.example"@sender.example>',
        b"<a\rb@sender.example>",
        b"<a\x00b@sender.example>",
        b"<a\x7fb@sender.example>",
        "<a\u2028b@sender.example> SMTPUTF8".encode(),
        "<a\u0085b@sender.example> SMTPUTF8".encode(),
    ],
    ids=["quoted bare CR", "bare CR", "NUL", "DEL", "line separator", "NEL"],
)
async def test_mail_from_with_a_line_breaking_character_is_501(
    smtp_server: LiveSmtp,
    routed: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    sender: bytes,
) -> None:
    answers = await transaction(smtp_server, b"client.example", sender, b"<shop@example.org>")

    assert answers[2] == reply_line(replies.S501_BAD_SENDER)
    assert await stored(sessionmaker) == []


async def test_mail_from_non_ascii_sender_is_accepted(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    sender = "<j\u00f6rg@sender.example> SMTPUTF8".encode()

    answers = await transaction(smtp_server, b"client.example", sender, b"<shop@example.org>")

    assert answers[2] == reply_line(replies.S250_SENDER_OK)
    assert [m.mail_from for m in await stored(sessionmaker)] == ["j\u00f6rg@sender.example"]


@pytest.mark.parametrize(
    "rcpt",
    [b'<"x\rBcc: victim@evil.example"@catchall.example>', b"<a\rb@catchall.example>"],
    ids=["quoted bare CR", "bare CR"],
)
async def test_rcpt_with_a_bare_cr_is_501(
    smtp_server: LiveSmtp,
    routed: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    rcpt: bytes,
) -> None:
    # Even a catch-all, which takes any local part, never sees one with a line break.
    answers = await transaction(smtp_server, b"client.example", b"<a@sender.example>", rcpt)

    assert answers[3] == reply_line(replies.S501_BAD_ADDRESS)
    assert await stored(sessionmaker) == []


# --- what we store of it: a client's odd text is never a storage error (PostgreSQL) -------


def sender_of(octets: int) -> bytes:
    domain = b"@sender.example"
    return b"<" + b"a" * (octets - len(domain)) + domain + b">"


async def test_mail_from_of_254_octets_is_stored(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # RFC 5321 4.5.3.1.3: 256 octets with the angle brackets.
    answers = await transaction(
        smtp_server, b"client.example", sender_of(254), b"<shop@example.org>"
    )

    assert answers[-1].startswith(b"250 ")
    assert [len(m.mail_from) for m in await stored(sessionmaker)] == [254]


async def test_mail_from_over_254_octets_is_501(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    answers = await transaction(
        smtp_server, b"client.example", sender_of(400), b"<shop@example.org>"
    )

    assert answers[2] == reply_line(replies.S501_SENDER_TOO_LONG)
    assert await stored(sessionmaker) == []


async def test_data_message_id_with_nul_is_stored(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    odd = BODY.replace(b"<1@sender.example>", b"<1\x00\xc2\x85@sender.example>")
    commands = [
        b"EHLO client.example",
        b"MAIL FROM:<a@sender.example>",
        b"RCPT TO:<shop@example.org>",
        b"DATA",
        odd + b".",
    ]

    answers = await in_thread(lambda: dialogue(smtp_server, commands))

    assert answers[-1].startswith(b"250 ")
    assert [m.message_id for m in await stored(sessionmaker)] == ["<1??@sender.example>"]


async def test_ehlo_name_is_stored_as_in_the_received_field(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await transaction(
        smtp_server, b"odd\xc3\xa9 " + b"a" * 400, b"<a@sender.example>", b"<shop@example.org>"
    )

    [message] = await stored(sessionmaker)
    assert message.helo == ("odd??" + "a" * 400)[:255]
    assert message.content.startswith(f"Received: from {message.helo} (".encode())
