"""Smoke tests of the live SMTP server with smtplib (the full battery comes separately)."""

from __future__ import annotations

import smtplib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Delivery, Message
from tests.smtp.conftest import LiveSmtp, in_thread

BODY = (
    b"From: a@sender.example\r\nTo: shop@example.org\r\nSubject: hi\r\n"
    b"Message-ID: <1@sender.example>\r\n\r\nHello\r\n"
)


def _exchange(
    live: LiveSmtp, sender: str, recipients: list[str], body: bytes
) -> list[tuple[int, bytes]]:
    replies = []
    with live.client() as client:
        replies.append(client.ehlo())
        replies.append(client.mail(sender))
        for rcpt in recipients:
            replies.append(client.rcpt(rcpt))
        if any(code == 250 for code, _ in replies[2:]):
            replies.append(client.data(body))
    return replies


async def test_smtp_forward_is_stored_once(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    replies = await in_thread(
        _exchange, smtp_server, "a@sender.example", ["shop@example.org", "team@example.org"], BODY
    )
    assert [code for code, _ in replies] == [250, 250, 250, 250, 250]
    assert replies[2][1] == b"2.1.5 Recipient OK"
    async with sessionmaker() as s:
        messages = list(await s.scalars(select(Message)))
        deliveries = list(await s.scalars(select(Delivery).order_by(Delivery.recipient)))
    assert len(messages) == 1
    assert messages[0].content.endswith(BODY)
    assert messages[0].content.startswith(
        b"Received: from client.example ([127.0.0.1])\r\n"
        b"\tby mx.mailroute.example (mailroute) with ESMTP id "
    )
    assert [(d.recipient, d.original_rcpt) for d in deliveries] == [
        ("me@inbox.example", "shop@example.org"),
        ("other@inbox.example", "team@example.org"),
    ]
    assert all(
        d.mail_from.startswith("SRS0=") and d.mail_from.endswith("@mx.mailroute.example")
        for d in deliveries
    )


async def test_smtp_relay_and_unknown_refused(
    smtp_server: LiveSmtp, routed: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    replies = await in_thread(
        _exchange,
        smtp_server,
        "a@sender.example",
        ["x@foreign.example", "nobody@example.org"],
        BODY,
    )
    assert replies[2] == (550, b"5.7.1 Relay access denied: foreign.example is not served here")
    assert replies[3] == (
        550,
        b"5.1.1 <nobody@example.org>: Recipient address rejected: no such address",
    )
    async with sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(Message)) == 0


async def test_smtp_null_sender_and_ehlo(smtp_server: LiveSmtp, routed: None) -> None:
    def run() -> tuple[tuple[int, bytes], tuple[int, bytes], set[str]]:
        with smtp_server.client() as client:
            client.ehlo()
            features = set(client.esmtp_features)
            return client.mail("<>"), client.rcpt("shop@example.org"), features

    mail, rcpt, features = await in_thread(run)
    assert mail[0] == 250 and rcpt[0] == 250
    assert {"size", "8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes"} <= features
    assert "auth" not in features


async def test_smtp_oversized(smtp_server: LiveSmtp, routed: None) -> None:
    def run() -> tuple[int, bytes]:
        with smtp_server.client() as client:
            client.ehlo()
            client.mail("a@sender.example")
            client.rcpt("shop@example.org")
            try:
                return client.data(BODY + (b"x" * 98 + b"\r\n") * 700)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error

    assert await in_thread(run) == (552, b"5.3.4 Error: Too much mail data")
