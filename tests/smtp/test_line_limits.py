"""Line lengths (RFC 5321 4.5.3.1): a command line is at most 512 octets, a text line in
DATA at most 1000, both counting the <CRLF> (the dot added for transparency not counted).

Over the limit the answer is 500 5.5.2 ("500 Line too long", 4.5.3.1.10) and the session
goes on. A long DATA line refuses the whole message: we never fold lines, content stays
exactly what was sent.
"""

from __future__ import annotations

import pytest

from app.smtp import replies
from tests.smtp.conftest import LiveSmtp, in_thread
from tests.smtp.raw import Reply, greeted
from tests.smtp.stored import Sessionmaker, stored_messages

COMMAND_LIMIT = 512
TEXT_LIMIT = 1000
HEAD = b"From: a@sender.example\r\nSubject: long lines\r\n\r\n"


def noop_of(octets: int) -> bytes:
    """A NOOP command line (RFC 5321 4.1.1.9 allows an argument) of ``octets`` with CRLF."""
    return b"NOOP " + b"x" * (octets - len(b"NOOP \r\n"))


def line_of(octets: int, start: bytes = b"") -> bytes:
    """A text line of ``octets`` with its CRLF."""
    return start + b"y" * (octets - len(start) - 2) + b"\r\n"


def commands(
    live: LiveSmtp, lines: list[bytes], helo: bytes = b"EHLO client.example"
) -> list[Reply]:
    with greeted(live.host, live.port, helo) as client:
        return [client.command(line) for line in lines]


def message(live: LiveSmtp, content: bytes) -> list[Reply]:
    """The replies to the end of data of ``content`` (sent verbatim), then to NOOP."""
    with greeted(live.host, live.port) as client:
        client.command(b"MAIL FROM:<a@sender.example>")
        assert client.command(b"RCPT TO:<shop@example.org>").code == 250
        assert client.command(b"DATA").code == 354
        client.send(content + b".\r\nNOOP\r\n")
        return client.replies(2)


def status(answer: Reply) -> tuple[int, bytes]:
    return answer.code, answer.text[:6]


HELLOS = {"ehlo": b"EHLO client.example", "helo": b"HELO client.example"}


@pytest.mark.parametrize("helo", HELLOS.values(), ids=HELLOS.keys())
async def test_command_line_of_512_octets_is_accepted(smtp_server: LiveSmtp, helo: bytes) -> None:
    [answer] = await in_thread(commands, smtp_server, [noop_of(COMMAND_LIMIT)], helo)
    assert status(answer) == (250, b"2.0.0 ")


@pytest.mark.parametrize("helo", HELLOS.values(), ids=HELLOS.keys())
async def test_command_line_of_513_octets_is_too_long(smtp_server: LiveSmtp, helo: bytes) -> None:
    [answer, after] = await in_thread(
        commands, smtp_server, [noop_of(COMMAND_LIMIT + 1), b"NOOP"], helo
    )
    assert status(answer) == (500, b"5.5.2 ")
    assert status(after) == (250, b"2.0.0 ")


async def test_command_line_far_over_the_limit_is_too_long(smtp_server: LiveSmtp) -> None:
    # Longer than aiosmtpd's read buffer limit: drained to its end, then refused.
    [answer, after] = await in_thread(commands, smtp_server, [noop_of(70_000), b"NOOP"])
    assert status(answer) == (500, b"5.5.2 ")
    assert status(after) == (250, b"2.0.0 ")


async def test_command_limit_holds_after_many_ehlo(smtp_server: LiveSmtp) -> None:
    # aiosmtpd adds the SIZE and SMTPUTF8 allowances to MAIL's limit at every EHLO.
    mail = b"MAIL FROM:<a@sender.example> " + b"X" * 600
    answers = await in_thread(commands, smtp_server, [b"EHLO again.example"] * 30 + [mail])
    assert status(answers[-1]) == (500, b"5.5.2 ")


async def test_rcpt_too_long_adds_no_recipient(smtp_server: LiveSmtp, routed: None) -> None:
    rcpt = b"RCPT TO:<shop@example.org> " + b"X" * COMMAND_LIMIT
    answers = await in_thread(
        commands, smtp_server, [b"MAIL FROM:<a@sender.example>", rcpt, b"DATA"]
    )
    assert [status(a) for a in answers[1:]] == [(500, b"5.5.2 "), (503, b"5.5.1 ")]


async def test_data_line_of_1000_octets_is_stored_untouched(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    content = HEAD + line_of(TEXT_LIMIT)
    [answer, _noop] = await in_thread(message, smtp_server, content)
    assert answer.code == 250, answer
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(b"\r\n" + content)


async def test_data_line_of_1000_octets_plus_a_stuffed_dot_is_stored(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    # RFC 5321 4.5.3.1.6: the dot doubled for transparency does not count.
    line = line_of(TEXT_LIMIT, start=b".")
    [answer, _noop] = await in_thread(message, smtp_server, HEAD + b"." + line)
    assert answer.code == 250, answer
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(b"\r\n" + HEAD + line)


OVER = {
    "1001_octets": line_of(TEXT_LIMIT + 1),
    "1001_octets_after_unstuffing": b"." + line_of(TEXT_LIMIT + 1, start=b"."),
    "far_over": line_of(70_000),
}


@pytest.mark.parametrize("line", OVER.values(), ids=OVER.keys())
async def test_data_line_over_1000_octets_is_refused(
    smtp_server: LiveSmtp, routed: None, line: bytes
) -> None:
    [answer, after] = await in_thread(message, smtp_server, HEAD + line + b"short\r\n")
    assert status(answer) == (500, b"5.5.2 ")
    assert status(after) == (250, b"2.0.0 ")


@pytest.mark.parametrize("line", OVER.values(), ids=OVER.keys())
async def test_data_line_over_1000_octets_stores_nothing(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker, line: bytes
) -> None:
    await in_thread(message, smtp_server, HEAD + line)
    assert await stored_messages(sessionmaker) == []


async def test_data_line_just_over_gets_our_reply(smtp_server: LiveSmtp, routed: None) -> None:
    [answer, _noop] = await in_thread(message, smtp_server, HEAD + line_of(TEXT_LIMIT + 1))
    assert f"{answer.code} {answer.text.decode()}" == replies.S500_LINE_TOO_LONG
