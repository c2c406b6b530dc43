"""The SMTP dialogue at its edges: pipelining, RSET in every state, commands out of order,
odd bytes in commands and in DATA. Every client mistake gets its reply with an RFC 3463
enhanced code, the session goes on, nothing is lost, and no traceback reaches the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from app.smtp import replies
from app.smtp.limits import DEFAULT_LIMITS
from tests.smtp.conftest import LiveSmtp, in_thread
from tests.smtp.raw import Reply, greeted
from tests.smtp.stored import Sessionmaker, stored_messages

MAIL = b"MAIL FROM:<a@sender.example>"
RCPT = b"RCPT TO:<shop@example.org>"
BODY = b"From: a@sender.example\r\nSubject: hi\r\n\r\nHello\r\n"


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Client mistakes are logged at most as information, never as an error with a trace."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


def status(answer: Reply) -> tuple[int, str]:
    return answer.code, answer.text.split(b" ", 1)[0].decode()


def whole(answer: Reply) -> str:
    return f"{answer.code} {answer.text.decode()}"


def dialogue(live: LiveSmtp, lines: list[bytes], helo: bytes | None = b"EHLO client.example"):
    """Each line sent as a command, after the greeting (and ``helo``); their replies."""
    with greeted(live.host, live.port, helo) as client:
        return [client.command(line) for line in lines]


# Pipelining (RFC 2920): the replies come back in order, one per command.


async def test_pipelined_transaction_gets_replies_in_order(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    def run() -> list[Reply]:
        with greeted(smtp_server.host, smtp_server.port) as client:
            client.send(
                MAIL + b"\r\n" + RCPT + b"\r\nRCPT TO:<nobody@foreign.example>\r\n"
                b"RCPT TO:<team@example.org>\r\nDATA\r\n"
            )
            answers = client.replies(5)
            client.send(BODY + b".\r\nNOOP\r\nQUIT\r\n")
            return answers + client.replies(3)

    answers = await in_thread(run)
    [stored] = await stored_messages(sessionmaker)
    assert [whole(a) for a in answers[:4]] + [status(a) for a in answers[4:]] == [
        replies.S250_SENDER_OK,
        replies.S250_RECIPIENT_OK,
        replies.S550_RELAY_DENIED.format(domain="foreign.example"),
        replies.S250_RECIPIENT_OK,
        (354, "End"),
        (250, "2.0.0"),
        (250, "2.0.0"),
        (221, "2.0.0"),
    ]
    assert answers[5].text.decode().endswith(stored.queue_id)


async def test_pipelined_noop_flood_is_answered_in_full(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    # Up to Postfix's smtpd_junk_command_limit NOOPs are free (past it, see test_limits).
    count = DEFAULT_LIMITS.junk_command_limit

    def run() -> list[Reply]:
        with greeted(smtp_server.host, smtp_server.port) as client:
            client.send(b"NOOP\r\n" * count)
            answers = client.replies(count)
            client.send(MAIL + b"\r\n" + RCPT + b"\r\nDATA\r\n")
            answers += client.replies(3)
            client.send(BODY + b".\r\n")
            return [*answers, client.reply()]

    answers = await in_thread(run)
    assert {status(a) for a in answers[:count]} == {(250, "2.0.0")}
    assert [a.code for a in answers[count:]] == [250, 250, 354, 250]
    assert len(await stored_messages(sessionmaker)) == 1


# RSET in every state (RFC 5321 4.1.1.5): 250, and the transaction is gone.

RSET_CASES = {
    # state before RSET, the command after it, the reply that shows the state after RSET
    "before_helo": ([], None, b"NOOP", (250, "2.0.0")),
    "after_ehlo": ([], b"EHLO client.example", RCPT, (503, "5.5.1")),
    "after_mail": ([MAIL], b"EHLO client.example", RCPT, (503, "5.5.1")),
    "after_rcpt": ([MAIL, RCPT], b"EHLO client.example", b"DATA", (503, "5.5.1")),
}


@pytest.mark.parametrize(
    ("before", "helo", "probe", "expected"), RSET_CASES.values(), ids=RSET_CASES.keys()
)
async def test_rset_in_state(
    smtp_server: LiveSmtp,
    routed: None,
    before: list[bytes],
    helo: bytes | None,
    probe: bytes,
    expected: tuple[int, str],
) -> None:
    answers = await in_thread(dialogue, smtp_server, [*before, b"RSET", probe], helo)
    assert [status(a) for a in answers[-2:]] == [(250, "2.0.0"), expected]


async def test_rset_after_data_keeps_the_message(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    def run() -> list[Reply]:
        with greeted(smtp_server.host, smtp_server.port) as client:
            client.send(MAIL + b"\r\n" + RCPT + b"\r\nDATA\r\n")
            client.replies(3)
            client.send(BODY + b".\r\nRSET\r\nMAIL FROM:<b@sender.example>\r\n")
            return client.replies(3)

    answers = await in_thread(run)
    assert [status(a) for a in answers] == [(250, "2.0.0"), (250, "2.0.0"), (250, "2.1.0")]
    assert len(await stored_messages(sessionmaker)) == 1


async def test_rset_with_an_argument_is_a_syntax_error(smtp_server: LiveSmtp) -> None:
    [answer] = await in_thread(dialogue, smtp_server, [b"RSET now"])
    assert status(answer) == (501, "5.5.4")


# Commands out of sequence (RFC 5321 4.1.4, 3.3): 503 5.5.1.

SEQUENCE_CASES = {
    # RFC 5321 4.1.4 lets a server require EHLO/HELO first, as Postfix's smtpd_helo_required.
    "mail_before_helo": (None, [MAIL]),
    "rcpt_before_helo": (None, [RCPT]),
    "data_before_helo": (None, [b"DATA"]),
    "rcpt_before_mail": (b"EHLO client.example", [RCPT]),
    "data_before_mail": (b"EHLO client.example", [b"DATA"]),
    "data_before_rcpt": (b"EHLO client.example", [MAIL, b"DATA"]),
    "data_after_refused_rcpt": (
        b"EHLO client.example",
        [MAIL, b"RCPT TO:<x@foreign.example>", b"DATA"],
    ),
    "duplicate_mail": (b"EHLO client.example", [MAIL, MAIL]),
}


@pytest.mark.parametrize(("helo", "lines"), SEQUENCE_CASES.values(), ids=SEQUENCE_CASES.keys())
async def test_command_out_of_sequence(
    smtp_server: LiveSmtp, routed: None, helo: bytes | None, lines: list[bytes]
) -> None:
    answers = await in_thread(dialogue, smtp_server, [*lines, b"NOOP"], helo)
    assert [status(a) for a in answers[-2:]] == [(503, "5.5.1"), (250, "2.0.0")]


# Odd bytes in commands: a syntax reply, never a traceback, and the session goes on.

BAD_COMMANDS = {
    "empty_line": ([], b"", (500, "5.5.2")),
    "unknown_command": ([], b"XYZZY", (500, "5.5.2")),
    "nul_in_command_word": ([], b"NO\x00OP", (500, "5.5.2")),
    "high_byte_command_word": ([], b"NO\xffOP", (500, "5.5.2")),
    "mail_non_utf8": ([], b"MAIL FROM:<\xff@sender.example>", (501, "5.1.7")),
    "mail_nul": ([], b"MAIL FROM:<a\x00b@sender.example>", (501, "5.1.7")),
    "mail_control": ([], b"MAIL FROM:<a\x1bb@sender.example>", (501, "5.1.7")),
    "rcpt_non_utf8": ([MAIL], b"RCPT TO:<\xfe@example.org>", (501, "5.1.3")),
    "rcpt_nul": ([MAIL], b"RCPT TO:<sh\x00op@example.org>", (501, "5.1.3")),
    "rcpt_nul_in_domain": ([MAIL], b"RCPT TO:<shop@example\x00.org>", (501, "5.1.3")),
    "vrfy_non_utf8": ([], b"VRFY <\xff@example.org>", (502, "5.5.1")),
    "vrfy_nul": ([], b"VRFY a\x00b@example.org", (502, "5.5.1")),
    "helo_non_utf8": ([], b"HELO \xff.example", (501, "5.5.2")),
    "ehlo_nul": ([], b"EHLO a\x00b.example", (501, "5.5.2")),
}


@pytest.mark.parametrize(
    ("before", "line", "expected"), BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys()
)
async def test_bad_command_bytes_get_a_reply(
    smtp_server: LiveSmtp,
    routed: None,
    before: list[bytes],
    line: bytes,
    expected: tuple[int, str],
) -> None:
    answers = await in_thread(dialogue, smtp_server, [*before, line, b"NOOP"])
    assert [status(a) for a in answers[-2:]] == [expected, (250, "2.0.0")]


@pytest.mark.parametrize(
    ("before", "line", "expected"), BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys()
)
async def test_bad_command_bytes_leave_a_working_session(
    smtp_server: LiveSmtp,
    routed: None,
    sessionmaker: Sessionmaker,
    before: list[bytes],
    line: bytes,
    expected: tuple[int, str],
) -> None:
    def run() -> Reply:
        with greeted(smtp_server.host, smtp_server.port) as client:
            for command in [*before, line, b"RSET", b"EHLO client.example", MAIL, RCPT]:
                client.command(command)
            client.command(b"DATA")
            client.send(BODY + b".\r\n")
            return client.reply()

    assert (await in_thread(run)).code == 250
    [stored] = await stored_messages(sessionmaker)
    assert stored.mail_from == "a@sender.example"


async def test_reply_text_never_echoes_raw_bytes(smtp_server: LiveSmtp) -> None:
    answers = await in_thread(dialogue, smtp_server, [b"VRFY <\xff\x00\x1b@x>", b"NOOP"])
    assert answers[0].code in (252, 502)
    assert all(line.isascii() and line.decode().isprintable() for line in answers[0].lines)


AUTH_LINES = {
    "plain": b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=",
    "login": b"AUTH LOGIN",
    "bare": b"AUTH",
}


@pytest.mark.parametrize("line", AUTH_LINES.values(), ids=AUTH_LINES.keys())
async def test_auth_is_not_enabled(smtp_server: LiveSmtp, line: bytes) -> None:
    answers = await in_thread(dialogue, smtp_server, [line, b"NOOP"])
    assert [whole(answers[0]), status(answers[1])] == [
        replies.S503_NO_AUTH,
        (250, "2.0.0"),
    ]


# NUL and 8-bit bytes in DATA are content: stored exactly as sent.


async def test_data_with_nul_and_8bit_bytes_is_stored_untouched(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    content = b"Subject: bytes\r\n\r\nnul \x00 here, \xff\xfe not UTF-8, \xc3\xa9 is\r\n"

    def run() -> Reply:
        with greeted(smtp_server.host, smtp_server.port) as client:
            client.send(MAIL + b" BODY=8BITMIME\r\n" + RCPT + b"\r\nDATA\r\n")
            client.replies(3)
            client.send(content + b".\r\n")
            return client.reply()

    assert (await in_thread(run)).code == 250
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(b"\r\n" + content)


# VRFY and EXPN never tell which addresses exist (RFC 5321 3.5.3, 7.3).

VRFY_TARGETS = {
    "alias": b"VRFY shop@example.org",
    "unknown": b"VRFY nobody@example.org",
    "foreign": b"VRFY user@foreign.example",
    "bare_name": b"VRFY shop",
}


@pytest.mark.parametrize("line", VRFY_TARGETS.values(), ids=VRFY_TARGETS.keys())
async def test_vrfy_answers_252_whatever_the_address(
    smtp_server: LiveSmtp, routed: None, line: bytes
) -> None:
    [answer] = await in_thread(dialogue, smtp_server, [line])
    assert (
        whole(answer) == "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"
    )


@pytest.mark.parametrize(
    "line", [b"EXPN team@example.org", b"EXPN nobody"], ids=["list", "unknown"]
)
async def test_expn_is_not_implemented(smtp_server: LiveSmtp, routed: None, line: bytes) -> None:
    [answer] = await in_thread(dialogue, smtp_server, [line])
    assert status(answer) == (502, "5.5.1")
    assert b"@" not in answer.text


async def test_data_with_nul_in_message_id_is_stored_untouched(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    # The Message-ID is also kept apart (a text column): PostgreSQL refuses NUL in text.
    content = b"Subject: bytes\r\nMessage-ID: <a\x00b\xff@sender.example>\r\n\r\nHello\r\n"

    def run() -> Reply:
        with greeted(smtp_server.host, smtp_server.port) as client:
            client.send(MAIL + b"\r\n" + RCPT + b"\r\nDATA\r\n")
            client.replies(3)
            client.send(content + b".\r\n")
            return client.reply()

    assert (await in_thread(run)).code == 250
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(b"\r\n" + content)
