"""The SMTP dialogue, command by command, against the live server with smtplib.

Replies the server chooses itself are compared whole against app.smtp.replies; aiosmtpd's
own replies by their code and RFC 3463 enhanced status code (their wording is aiosmtpd's).
"""

from __future__ import annotations

import re
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.db.engine import create_engine, create_sessionmaker
from app.routing.srs import Srs
from app.smtp import replies
from app.smtp.handler import MAX_RECIPIENTS, InboundConfig, InboundHandler
from app.smtp.server import start_server, tls_context
from tests.conftest import HOSTNAME
from tests.smtp.conftest import MAX_SIZE, LiveSmtp, in_thread
from tests.smtp.stored import Sessionmaker, count_deliveries, stored_messages

Reply = tuple[int, bytes]

SENDER = "a@sender.example"
BODY = (
    b"From: a@sender.example\r\nTo: shop@example.org\r\nSubject: hi\r\n"
    b"Message-ID: <1@sender.example>\r\n\r\nHello\r\n"
)
# Text only our code could put in a reply; it must never reach the client.
INTERNAL_DETAIL = "internal detail: the session factory is broken"
# RFC 3463 2: class.subject.detail, class 2, 4 or 5, then the text.
ENHANCED = re.compile(rb"^(?P<status>[245]\.\d{1,3}\.\d{1,3}) ")


def reply(constant: str) -> Reply:
    """A reply constant as smtplib returns it: (code, text after the code)."""
    code, _, text = constant.partition(" ")
    return int(code), text.encode()


def enhanced_status(text: bytes) -> str | None:
    match = ENHANCED.match(text)
    return match.group("status").decode() if match else None


def received_prefix(protocol: str) -> bytes:
    return (
        b"Received: from client.example ([127.0.0.1])\r\n"
        b"\tby " + HOSTNAME.encode() + b" (mailroute) with " + protocol.encode() + b" id "
    )


def handler_on(sessionmaker: Any, srs: Srs) -> InboundHandler:
    return InboundHandler(
        sessionmaker, srs, InboundConfig(hostname=HOSTNAME, queue_lifetime=timedelta(days=5))
    )


@asynccontextmanager
async def serving(
    handler: InboundHandler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[LiveSmtp]:
    server = await start_server(
        handler, host="127.0.0.1", port=0, max_message_size=MAX_SIZE, tls=tls
    )
    try:
        yield LiveSmtp("127.0.0.1", server.sockets[0].getsockname()[1], handler)
    finally:
        server.close()
        await server.wait_closed()
        await handler.drain()


def send(
    live: LiveSmtp,
    recipients: list[str],
    body: bytes = BODY,
    *,
    sender: str = SENDER,
    mail_options: tuple[str, ...] = (),
    helo: bool = False,
) -> list[Reply]:
    """One transaction; the replies to MAIL, each RCPT and (if any RCPT passed) DATA."""
    with live.client() as client:
        if helo:
            client.helo()
        else:
            client.ehlo()
        answers = [client.mail(sender, list(mail_options))]
        answers += [client.rcpt(rcpt) for rcpt in recipients]
        if any(code == 250 for code, _ in answers[1:]):
            answers.append(client.data(body))
        return answers


def with_received(count: int) -> bytes:
    trace = b"".join(
        b"Received: from relay%d.example by relay%d.example; Wed, 1 May 2024 12:00:00 +0000\r\n"
        % (n, n + 1)
        for n in range(count)
    )
    return trace + BODY


# EHLO


async def test_ehlo_greets_with_the_hostname(smtp_server: LiveSmtp) -> None:
    def run() -> Reply:
        with smtp_server.client() as client:
            return client.ehlo()

    code, text = await in_thread(run)
    assert (code, text.split(b"\n")[0]) == (250, HOSTNAME.encode())


async def test_ehlo_advertises_the_mx_extensions(smtp_server: LiveSmtp) -> None:
    def run() -> dict[str, str]:
        with smtp_server.client() as client:
            client.ehlo()
            return dict(client.esmtp_features)

    features = await in_thread(run)
    assert features["size"] == str(MAX_SIZE)
    assert {"8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"} <= features.keys()


async def test_ehlo_offers_no_auth(smtp_server: LiveSmtp) -> None:
    def run() -> Reply:
        with smtp_server.client() as client:
            return client.ehlo()

    _code, text = await in_thread(run)
    assert not [line for line in text.split(b"\n") if line.upper().startswith(b"AUTH")]


async def test_ehlo_without_tls_files_offers_no_starttls(smtp_server: LiveSmtp) -> None:
    def run() -> bool:
        with smtp_server.client() as client:
            client.ehlo()
            return client.has_extn("starttls")

    assert await in_thread(run) is False


# STARTTLS (RFC 3207)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={HOSTNAME}",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_server(
    sessionmaker: Sessionmaker, srs: Srs, certificate: tuple[Path, Path]
) -> AsyncIterator[LiveSmtp]:
    async with serving(handler_on(sessionmaker, srs), tls=tls_context(*certificate)) as live:
        yield live


@pytest.fixture
def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client that trusts exactly the test certificate."""
    return ssl.create_default_context(cafile=str(certificate[0]))


async def test_ehlo_with_tls_files_offers_starttls(tls_server: LiveSmtp) -> None:
    def run() -> bool:
        with tls_server.client() as client:
            client.ehlo()
            return client.has_extn("starttls")

    assert await in_thread(run) is True


async def test_starttls_upgrades_the_session(
    tls_server: LiveSmtp, client_tls: ssl.SSLContext
) -> None:
    def run() -> tuple[Reply, str | None, bool]:
        with tls_server.client() as client:
            client.ehlo()
            answer = client.starttls(context=client_tls)
            client.ehlo()
            return answer, client.sock.version(), client.has_extn("starttls")  # type: ignore[union-attr]

    (code, _text), version, offered_again = await in_thread(run)
    assert code == 220
    assert version is not None and version.startswith("TLS")
    assert offered_again is False  # RFC 3207 4.2: not offered once TLS is on


async def test_ehlo_after_starttls_offers_no_auth(
    tls_server: LiveSmtp, client_tls: ssl.SSLContext
) -> None:
    def run() -> Reply:
        with tls_server.client() as client:
            client.ehlo()
            client.starttls(context=client_tls)
            return client.ehlo()

    _code, text = await in_thread(run)
    assert not [line for line in text.split(b"\n") if line.upper().startswith(b"AUTH")]


async def test_received_says_esmtps_after_starttls(
    tls_server: LiveSmtp,
    client_tls: ssl.SSLContext,
    routed: None,
    sessionmaker: Sessionmaker,
) -> None:
    def run() -> Reply:
        with tls_server.client() as client:
            client.ehlo()
            client.starttls(context=client_tls)
            client.ehlo()
            client.mail(SENDER)
            client.rcpt("shop@example.org")
            return client.data(BODY)

    code, _text = await in_thread(run)
    assert code == 250
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.startswith(received_prefix("ESMTPS"))


# Enhanced status codes (RFC 2034, RFC 3463) on every reply but the greeting and EHLO

ENHANCED_CASES = {
    "noop": ([], "NOOP", 250, "2.0.0"),
    "rset": ([], "RSET", 250, "2.0.0"),
    "vrfy": ([], "VRFY shop@example.org", 252, "2.5.0"),
    "help": ([], "HELP", 250, "2.0.0"),
    "unknown_command": ([], "XYZZY", 500, "5.5.2"),
    "helo_without_name": ([], "HELO", 501, "5.5.4"),
    "mail_syntax": ([], "MAIL TO:<shop@example.org>", 501, "5.5.4"),
    "rcpt_before_mail": ([], "RCPT TO:<shop@example.org>", 503, "5.5.1"),
    "data_before_rcpt": ([f"MAIL FROM:<{SENDER}>"], "DATA", 503, "5.5.1"),
    "nested_mail": ([f"MAIL FROM:<{SENDER}>"], f"MAIL FROM:<{SENDER}>", 503, "5.5.1"),
    "size_over_limit": ([], f"MAIL FROM:<{SENDER}> SIZE={MAX_SIZE + 1}", 552, "5.3.4"),
    "expn": ([], "EXPN staff", 502, "5.5.1"),
    # RFC 3207 4: 454 when TLS is not available; the status is 4.7.0 (security, transient).
    "starttls_without_tls": ([], "STARTTLS", 454, "4.7.0"),
    "quit": ([], "QUIT", 221, "2.0.0"),
}


@pytest.mark.parametrize(
    ("before", "command", "code", "status"), ENHANCED_CASES.values(), ids=ENHANCED_CASES.keys()
)
async def test_reply_carries_an_enhanced_status_code(
    smtp_server: LiveSmtp, before: list[str], command: str, code: int, status: str
) -> None:
    def run() -> Reply:
        with smtp_server.client() as client:
            client.ehlo()
            for line in before:
                client.docmd(line)
            return client.docmd(command)

    answer_code, text = await in_thread(run)
    assert (answer_code, enhanced_status(text)) == (code, status), text


async def test_reply_to_mail_is_sender_ok(smtp_server: LiveSmtp) -> None:
    def run() -> Reply:
        with smtp_server.client() as client:
            client.ehlo()
            return client.mail(SENDER)

    assert await in_thread(run) == reply(replies.S250_SENDER_OK)


async def test_reply_to_bad_recipient_syntax(smtp_server: LiveSmtp) -> None:
    def run() -> Reply:
        with smtp_server.client() as client:
            client.ehlo()
            client.mail(SENDER)
            return client.docmd("RCPT TO:<not an address>")

    assert await in_thread(run) == reply(replies.S501_BAD_ADDRESS)


# Recipients per transaction (RFC 5321 4.5.3.1.8)


def catch_all_recipients(count: int) -> list[str]:
    return [f"r{n}@catchall.example" for n in range(count)]


async def test_rcpt_accepts_a_hundred_recipients(smtp_server: LiveSmtp, routed: None) -> None:
    answers = await in_thread(send, smtp_server, catch_all_recipients(MAX_RECIPIENTS + 1))
    assert answers[1 : MAX_RECIPIENTS + 1] == [reply(replies.S250_RECIPIENT_OK)] * 100


async def test_rcpt_101st_recipient_is_deferred(smtp_server: LiveSmtp, routed: None) -> None:
    answers = await in_thread(send, smtp_server, catch_all_recipients(MAX_RECIPIENTS + 1))
    assert answers[MAX_RECIPIENTS + 1] == reply(replies.S452_TOO_MANY_RECIPIENTS)


async def test_rcpt_limit_still_stores_the_hundred(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(send, smtp_server, catch_all_recipients(MAX_RECIPIENTS + 1))
    assert answers[-1][0] == 250
    assert len(await stored_messages(sessionmaker)) == 1


# Mail loops (RFC 5321 6.3)


async def test_data_with_31_received_headers_is_a_loop(smtp_server: LiveSmtp, routed: None) -> None:
    answers = await in_thread(send, smtp_server, ["shop@example.org"], with_received(31))
    assert answers[-1] == reply(replies.S554_LOOP)


async def test_data_loop_stores_nothing(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    await in_thread(send, smtp_server, ["shop@example.org"], with_received(31))
    assert await stored_messages(sessionmaker) == []
    assert await count_deliveries(sessionmaker) == 0


async def test_data_with_30_received_headers_is_accepted(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(send, smtp_server, ["shop@example.org"], with_received(30))
    [stored] = await stored_messages(sessionmaker)
    assert answers[-1] == reply(replies.S250_QUEUED.format(queue_id=stored.queue_id))


# The database unreachable: 451, never a 5xx, never a 250 (RFC 5321 4.2.5)

DEAD_DATABASES: dict[str, Callable[[Path], str]] = {
    # Nothing listens on the discard port.
    "postgresql": lambda _tmp: "postgresql+asyncpg://postgres@127.0.0.1:9/x",
    # A file in a directory that does not exist (engine made without creating it).
    "sqlite": lambda tmp: f"sqlite+aiosqlite:///{tmp / 'missing' / 'mailroute.db'}",
}


@pytest.fixture(params=list(DEAD_DATABASES.values()), ids=list(DEAD_DATABASES))
async def dead_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    url = request.param(tmp_path)
    engine = create_engine(url) if url.startswith("postgresql") else create_async_engine(url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_rcpt_with_database_unreachable_is_temporary(
    dead_database: Sessionmaker, srs: Srs
) -> None:
    async with serving(handler_on(dead_database, srs)) as live:
        answers = await in_thread(send, live, ["shop@example.org"])
    assert answers[1] == reply(replies.S451_TEMPORARY_FAILURE)


async def test_rcpt_with_database_unreachable_keeps_the_session(
    dead_database: Sessionmaker, srs: Srs
) -> None:
    def run(live: LiveSmtp) -> Reply:
        with live.client() as client:
            client.ehlo()
            client.mail(SENDER)
            client.rcpt("shop@example.org")
            return client.noop()

    async with serving(handler_on(dead_database, srs)) as live:
        assert (await in_thread(run, live))[0] == 250


# Protocol names in our Received: line (RFC 3848, RFC 6531)


async def test_received_says_smtp_after_helo(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(lambda: send(smtp_server, ["shop@example.org"], helo=True))
    assert answers[-1][0] == 250
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.startswith(received_prefix("SMTP"))


async def test_received_says_esmtp_after_ehlo(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    await in_thread(send, smtp_server, ["shop@example.org"])
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.startswith(received_prefix("ESMTP"))


async def test_received_says_utf8smtp_for_smtputf8_mail(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(
        lambda: send(
            smtp_server,
            ["shop@example.org"],
            sender="jörg@sender.example",
            mail_options=("SMTPUTF8",),
        )
    )
    assert answers[-1][0] == 250
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.startswith(received_prefix("UTF8SMTP"))


# No Python exception text in a reply (aiosmtpd's default is "500 Error: (Exc) text")


async def failing_connection() -> Any:
    raise RuntimeError(INTERNAL_DETAIL)


@pytest.fixture
async def broken_engine() -> AsyncIterator[Sessionmaker]:
    """Sessions whose engine fails with a non-database error when it connects."""
    engine = create_async_engine("sqlite+aiosqlite://", async_creator=failing_connection)
    yield create_sessionmaker(engine)
    await engine.dispose()


class FailingAfter:
    """A session factory that serves ``calls`` sessions, then raises a non-database error."""

    def __init__(self, sessionmaker: Sessionmaker, calls: int) -> None:
        self.sessionmaker = sessionmaker
        self.calls = calls

    def __call__(self) -> AsyncSession:
        if self.calls <= 0:
            raise RuntimeError(INTERNAL_DETAIL)
        self.calls -= 1
        return self.sessionmaker()


async def test_rcpt_exception_is_temporary(broken_engine: Sessionmaker, srs: Srs) -> None:
    async with serving(handler_on(broken_engine, srs)) as live:
        answers = await in_thread(send, live, ["shop@example.org"])
    assert answers[1] == reply(replies.S451_TEMPORARY_FAILURE)


async def test_data_exception_is_temporary(
    sessionmaker: Sessionmaker, srs: Srs, routed: None
) -> None:
    # RCPT reads twice (the rules, then the sender's blocks); DATA's store is the third.
    async with serving(handler_on(FailingAfter(sessionmaker, calls=2), srs)) as live:
        answers = await in_thread(send, live, ["shop@example.org"])
    assert answers == [
        reply(replies.S250_SENDER_OK),
        reply(replies.S250_RECIPIENT_OK),
        reply(replies.S451_TEMPORARY_FAILURE),
    ]


async def test_data_exception_stores_nothing(
    sessionmaker: Sessionmaker, srs: Srs, routed: None
) -> None:
    async with serving(handler_on(FailingAfter(sessionmaker, calls=1), srs)) as live:
        await in_thread(send, live, ["shop@example.org"])
    assert await stored_messages(sessionmaker) == []
