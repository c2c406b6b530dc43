"""SMTP smuggling: an end-of-data that one server sees and another does not.

RFC 5321 2.3.8 and 4.1.1.4: lines end in <CRLF>, and only <CRLF>.<CRLF> ends the data.
aiosmtpd reads DATA up to <CRLF> only, so <LF>.<LF> and friends never end a message here;
but a message carrying them, relayed to a server that does honour them, would split in
two there. Our policy is Postfix 3.9's smtpd_forbid_bare_newline = reject: a message with
a bare <CR> or <LF> is refused at end of data (550 5.5.2), nothing is stored, and the
session goes on. We refuse rather than repair, so stored content is exactly what was sent.
"""

from __future__ import annotations

import pytest

from app.smtp import replies
from tests.smtp.conftest import LiveSmtp, in_thread
from tests.smtp.raw import Reply, greeted
from tests.smtp.stored import Sessionmaker, count_deliveries, stored_messages

HEAD = b"From: a@sender.example\r\nTo: shop@example.org\r\nSubject: first\r\n\r\nHello\r\n"
# What a smuggler hopes a downstream server reads as a second transaction.
SMUGGLED = (
    b"MAIL FROM:<ceo@bank.example>\r\n"
    b"RCPT TO:<team@example.org>\r\n"
    b"DATA\r\n"
    b"From: ceo@bank.example\r\nSubject: smuggled\r\n\r\nPay now\r\n"
)

SEQUENCES = {
    "lf_dot_lf": b"\n.\n",
    "cr_dot_cr": b"\r.\r",
    "lf_dot_crlf": b"\n.\r\n",
    "crlf_dot_lf": b"\r\n.\n",
    "crlf_dot_cr": b"\r\n.\r",
    "cr_dot_crlf": b"\r.\r\n",
}
BARE = {
    "bare_lf": HEAD + b"one line\nand another\r\n",
    "bare_cr": HEAD + b"one line\rand another\r\n",
    "bare_lf_in_header": b"Subject: x\nBcc: team@example.org\r\n\r\nHello\r\n",
    "bare_cr_before_crlf": HEAD + b"text\r\r\n",
    "bare_lf_at_end": HEAD + b"last\n",
}
SMUGGLING = {name: HEAD + seq + SMUGGLED for name, seq in SEQUENCES.items()} | BARE
STUFFED = HEAD + b"..\r\nstill the first message\r\n.. and a line with a dot\r\n"


def session(live: LiveSmtp, content: bytes, then: bytes = b"NOOP") -> list[Reply]:
    """One transaction for shop@example.org sending ``content`` and the real end of data,
    then one more command: the replies to DATA, to the end of data, and to ``then``."""
    with greeted(live.host, live.port) as client:
        client.command(b"MAIL FROM:<a@sender.example>")
        assert client.command(b"RCPT TO:<shop@example.org>").code == 250
        answers = [client.command(b"DATA")]
        client.send(content + b"\r\n.\r\n" + then + b"\r\n")
        answers += client.replies(2)
        client.command(b"QUIT")
        return answers


def whole(answer: Reply) -> str:
    return f"{answer.code} {answer.text.decode()}"


@pytest.mark.parametrize("content", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggling_message_refused_at_end_of_data(
    smtp_server: LiveSmtp, routed: None, content: bytes
) -> None:
    answers = await in_thread(session, smtp_server, content)
    assert answers[0].code == 354
    assert whole(answers[1]) == replies.S550_BARE_NEWLINE


@pytest.mark.parametrize("content", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggling_stores_nothing(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker, content: bytes
) -> None:
    await in_thread(session, smtp_server, content)
    assert await stored_messages(sessionmaker) == []
    assert await count_deliveries(sessionmaker) == 0


@pytest.mark.parametrize("content", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggling_session_goes_on_with_one_reply_per_command(
    smtp_server: LiveSmtp, routed: None, content: bytes
) -> None:
    # The reply after the refusal is NOOP's: no reply to a smuggled MAIL, RCPT or DATA.
    answers = await in_thread(session, smtp_server, content)
    assert (answers[2].code, answers[2].text) == (250, b"2.0.0 OK")


@pytest.mark.parametrize("content", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggling_refusal_then_a_clean_message_is_stored_exactly(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker, content: bytes
) -> None:
    def run() -> list[int]:
        codes = []
        with greeted(smtp_server.host, smtp_server.port) as client:
            for body in (content, HEAD):
                client.command(b"MAIL FROM:<a@sender.example>")
                client.command(b"RCPT TO:<shop@example.org>")
                client.command(b"DATA")
                client.send(body + b"\r\n.\r\n")
                codes.append(client.reply().code)
        return codes

    assert await in_thread(run) == [550, 250]
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(b"\r\n" + HEAD + b"\r\n")
    assert b"smuggled" not in stored.content


async def test_smuggling_stuffed_dot_lines_are_content(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    # RFC 5321 4.5.2: "..<CRLF>" is a line holding one dot, not the end of the message.
    answers = await in_thread(session, smtp_server, STUFFED)
    assert answers[1].code == 250
    [stored] = await stored_messages(sessionmaker)
    expected = HEAD + b".\r\nstill the first message\r\n. and a line with a dot\r\n\r\n"
    assert stored.content.endswith(b"\r\n" + expected)
