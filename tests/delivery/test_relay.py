"""The relay client against a real SMTP server (the sink) on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from app.delivery.mx import Target
from app.delivery.outcome import Result
from app.delivery.relay import ConnectFailed, Connection, RelayConfig, connect, needs_smtputf8
from tests.delivery.sink import Sink

SENDER = "SRS0=AbCd=XY=sender.example=alice@mx.mailroute.example"
RECIPIENT = "me@inbox.example"
CONTENT = (
    b"Received: from client.example ([192.0.2.1])\r\n"
    b"\tby mx.mailroute.example (mailroute) with ESMTP id abc123;\r\n"
    b"\tWed, 01 May 2024 12:00:00 +0000\r\n"
    b"From: alice@sender.example\r\n"
    b"To: shop@example.org\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"Hello\r\n"
    b".a line that starts with a dot\r\n"
    b"..and one with two\r\n"
    b".\r\n"
    b"  trailing spaces  \r\n"
)
CONFIG = RelayConfig(local_hostname="mx.mailroute.example")


def target(sink: Sink) -> Target:
    return Target("sink", sink.host, sink.port)


async def close(connection: Connection) -> None:
    """Close, then let the loop finish closing the socket: closing a TLS transport only
    starts its shutdown, and the test's event loop ends soon after the test."""
    protocol = connection.client.protocol
    await connection.close()
    for _ in range(500):
        if protocol is None or protocol.transport is None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the connection was not closed within 5 s")


@asynccontextmanager
async def opened(sink: Sink, config: RelayConfig = CONFIG) -> AsyncIterator[Connection]:
    connection = await connect(target(sink), config)
    try:
        yield connection
    finally:
        await close(connection)


@pytest.fixture
async def connection(sink: Sink) -> AsyncIterator[Connection]:
    async with opened(sink) as connection:
        yield connection


async def test_connect_uses_starttls_when_offered(tls_sink: Sink) -> None:
    async with opened(tls_sink) as connection:
        outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.delivered
    assert tls_sink.received[0].tls


async def test_connect_sends_in_clear_when_starttls_not_offered(sink: Sink) -> None:
    async with opened(sink) as connection:
        outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.delivered
    assert not sink.received[0].tls


async def test_connect_tls_required_but_not_offered_is_temporary(sink: Sink) -> None:
    config = RelayConfig(local_hostname="mx.mailroute.example", tls_policy="require")
    with pytest.raises(ConnectFailed) as caught:
        await connect(target(sink), config)
    assert caught.value.outcome.result is Result.TEMPORARY
    assert caught.value.outcome.status == "4.7.5"
    assert caught.value.outcome.remote == f"sink[{sink.host}]"
    assert sink.received == []


async def test_connect_tls_required_and_offered_sends(tls_sink: Sink) -> None:
    config = RelayConfig(local_hostname="mx.mailroute.example", tls_policy="require")
    async with opened(tls_sink, config) as connection:
        outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.delivered
    assert tls_sink.received[0].tls


async def test_connect_without_starttls_stays_in_clear(tls_sink: Sink) -> None:
    config = RelayConfig(local_hostname="mx.mailroute.example", starttls=False)
    async with opened(tls_sink, config) as connection:
        await connection.send(SENDER, RECIPIENT, CONTENT)
    assert not tls_sink.received[0].tls


async def test_connect_refused_is_temporary(make_sink: Callable[..., Sink]) -> None:
    stopped = make_sink()
    stopped.stop()  # nothing listens on its port now
    with pytest.raises(ConnectFailed) as caught:
        await connect(target(stopped), CONFIG)
    assert caught.value.outcome.result is Result.TEMPORARY
    assert caught.value.outcome.remote == f"sink[{stopped.host}]"


async def test_connect_greets_with_our_hostname(connection: Connection, sink: Sink) -> None:
    await connection.send(SENDER, RECIPIENT, CONTENT)
    assert sink.received[0].helo == "mx.mailroute.example"


async def test_send_delivers_the_exact_bytes(connection: Connection, sink: Sink) -> None:
    outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.delivered
    assert sink.received[0].content == CONTENT


async def test_send_uses_the_envelope_given(connection: Connection, sink: Sink) -> None:
    await connection.send(SENDER, RECIPIENT, CONTENT)
    assert sink.received[0].mail_from == SENDER
    assert sink.received[0].rcpt_tos == [RECIPIENT]


async def test_send_reports_the_remote_reply(connection: Connection, sink: Sink) -> None:
    outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.reply == "250 2.0.0 OK: queued as 1"
    assert outcome.remote == f"sink[{sink.host}]"
    assert outcome.status == "2.0.0"


async def test_send_null_sender(connection: Connection, sink: Sink) -> None:
    outcome = await connection.send("", "alice@sender.example", CONTENT)
    assert outcome.delivered
    assert sink.received[0].mail_from == "<>"


async def test_send_several_messages_over_one_connection(
    connection: Connection, sink: Sink
) -> None:
    for number in range(3):
        outcome = await connection.send(SENDER, f"user{number}@inbox.example", CONTENT)
        assert outcome.delivered
    assert [r.rcpt_tos for r in sink.received] == [
        ["user0@inbox.example"],
        ["user1@inbox.example"],
        ["user2@inbox.example"],
    ]
    assert len({r.peer for r in sink.received}) == 1


async def test_send_utf8_recipient_uses_smtputf8(connection: Connection, sink: Sink) -> None:
    outcome = await connection.send(SENDER, "jürgen@inbox.example", CONTENT)
    assert outcome.delivered
    assert "SMTPUTF8" in sink.received[0].mail_options
    assert sink.received[0].rcpt_tos == ["jürgen@inbox.example"]


async def test_send_ascii_message_does_not_use_smtputf8(connection: Connection, sink: Sink) -> None:
    await connection.send(SENDER, RECIPIENT, CONTENT)
    assert "SMTPUTF8" not in sink.received[0].mail_options


async def test_send_8bit_body_declares_8bitmime(connection: Connection, sink: Sink) -> None:
    content = (
        b"Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    )
    outcome = await connection.send(SENDER, RECIPIENT, content)
    assert outcome.delivered
    assert "BODY=8BITMIME" in sink.received[0].mail_options
    assert sink.received[0].content == content


async def test_send_utf8_to_server_without_smtputf8_is_permanent(
    make_sink: Callable[..., Sink],
) -> None:
    sink = make_sink(smtputf8=False)
    async with opened(sink) as connection:
        outcome = await connection.send(SENDER, "jürgen@inbox.example", CONTENT)
    assert outcome.result is Result.PERMANENT
    assert outcome.status == "5.6.7"
    assert sink.received == []


async def test_send_refused_recipient_is_permanent(connection: Connection, sink: Sink) -> None:
    sink.refuse_rcpt("550 5.1.1 no such user")
    outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.result is Result.PERMANENT
    assert outcome.reply == "550 5.1.1 no such user"
    assert outcome.status == "5.1.1"


async def test_send_deferred_recipient_is_temporary(connection: Connection, sink: Sink) -> None:
    sink.refuse_rcpt("451 4.3.0 try later")
    outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.result is Result.TEMPORARY
    assert outcome.reply == "451 4.3.0 try later"


async def test_send_after_a_refusal_uses_the_same_connection(
    connection: Connection, sink: Sink
) -> None:
    sink.refuse_rcpt("550 5.1.1 no such user")
    await connection.send(SENDER, "gone@inbox.example", CONTENT)
    outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.delivered
    assert [r.rcpt_tos for r in sink.received] == [[RECIPIENT]]


async def test_send_refused_data_is_permanent(connection: Connection, sink: Sink) -> None:
    sink.refuse_data("554 5.7.1 message refused")
    outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.result is Result.PERMANENT
    assert outcome.reply == "554 5.7.1 message refused"
    assert sink.received == []


async def test_send_dropped_connection_is_temporary(connection: Connection, sink: Sink) -> None:
    sink.drop_at("data")
    outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.result is Result.TEMPORARY
    assert not connection.alive


async def test_send_timeout_is_temporary(sink: Sink) -> None:
    config = RelayConfig(local_hostname="mx.mailroute.example", timeout=0.3)
    sink.stall_at("rcpt", 3.0)
    async with opened(sink, config) as connection:
        outcome = await connection.send(SENDER, RECIPIENT, CONTENT)
    assert outcome.result is Result.TEMPORARY
    assert outcome.status == "4.4.2"


async def test_close_ends_the_session(connection: Connection) -> None:
    await close(connection)
    assert not connection.alive


async def test_connection_remote_names_host_and_address(connection: Connection) -> None:
    assert connection.remote == "sink[127.0.0.1]"


def test_needs_smtputf8_for_utf8_header() -> None:
    content = "Subject: Grüße\r\n\r\nbody\r\n".encode()
    assert needs_smtputf8("a@b.example", "c@d.example", content)


def test_needs_smtputf8_not_for_8bit_body_alone() -> None:
    content = b"Subject: hi\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    assert not needs_smtputf8("a@b.example", "c@d.example", content)


def test_needs_smtputf8_for_utf8_sender() -> None:
    assert needs_smtputf8("jürgen@b.example", "c@d.example", b"Subject: hi\r\n\r\nx\r\n")


# SMTP smuggling on the way out: stored content never ends the DATA early at the destination.
# aiosmtplib turns a bare CR or LF into CRLF (RFC 5321 2.3.8) and only then stuffs dots
# (4.5.2), so a stored "\n.\n" reaches the wire as "\r\n..\r\n", a line holding one dot.

SMUGGLED = b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@inbox.example>\r\nDATA\r\nPay now\r\n"
OUTBOUND_SMUGGLING = {
    "lf_dot_lf": b"\n.\n",
    "cr_dot_cr": b"\r.\r",
    "lf_dot_crlf": b"\n.\r\n",
    "crlf_dot_lf": b"\r\n.\n",
    "cr_dot_crlf": b"\r.\r\n",
    "crlf_dot_crlf": b"\r\n.\r\n",
}


@pytest.mark.parametrize("sequence", OUTBOUND_SMUGGLING.values(), ids=OUTBOUND_SMUGGLING.keys())
async def test_send_never_ends_data_early(
    connection: Connection, sink: Sink, sequence: bytes
) -> None:
    content = b"Subject: first\r\n\r\nbefore" + sequence + SMUGGLED
    outcome = await connection.send(SENDER, RECIPIENT, content)
    assert outcome.delivered
    second = await connection.send(SENDER, RECIPIENT, CONTENT)  # the session is in step
    assert second.delivered
    [first, _second] = sink.received
    assert first.content == b"Subject: first\r\n\r\nbefore\r\n.\r\n" + SMUGGLED
    assert first.rcpt_tos == [RECIPIENT]
