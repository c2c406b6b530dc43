"""The rspamd client against a real rspamd (tests/peers/rspamd.py), and against raw asyncio
servers on loopback that answer what no rspamd would: garbage, too much, nothing, slowly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from app.errors import SpamFilterUnavailable
from app.inbound_auth.rspamd import MAX_REPLY_BYTES, Rspamd, parse_reply
from app.inbound_auth.verdicts import Spam
from tests.peers.tools import free_port

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SENDER = "alice@sender.example"
RECIPIENTS = ["shop@mailroute.example", "news@mailroute.example"]
ENVELOPE = {
    "client_ip": "192.0.2.25",
    "helo": "mail.sender.example",
    "mail_from": SENDER,
    "recipients": RECIPIENTS,
    "queue_id": "q-0001",
    "hostname": "mx.mailroute.example",
}


def message(body: bytes, *, to: str = ", ".join(RECIPIENTS)) -> bytes:
    return (
        f"From: Alice <{SENDER}>\r\n"
        f"To: {to}\r\n"
        "Subject: lunch on thursday\r\n"
        "Date: Thu, 03 Dec 2026 18:00:00 +0000\r\n"
        "Message-ID: <lunch-1@sender.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    ).encode() + body


CLEAN = message(b"Shall we meet at noon at the usual place?\r\n")


@pytest.fixture
async def real(rspamd_url: str) -> AsyncIterator[Rspamd]:
    client = Rspamd(rspamd_url, timeout=10)
    yield client
    await client.aclose()


# The real rspamd.


async def test_rspamd_gtube_is_rejected(real: Rspamd) -> None:
    spam = await real.check(message(GTUBE + b"\r\n"), **ENVELOPE)  # type: ignore[arg-type]
    assert spam.action == "reject"
    assert spam.score >= spam.required  # type: ignore[operator]


async def test_rspamd_clean_message_gets_no_action_and_a_score(real: Rspamd) -> None:
    spam = await real.check(CLEAN, **ENVELOPE)  # type: ignore[arg-type]
    assert spam.action == "no action"
    assert isinstance(spam.score, float)
    assert spam.required == 15.0  # the stock actions.conf's reject threshold
    assert spam.score < 4.0  # below its greylist threshold


async def test_rspamd_check_accepts_a_bytearray_and_the_null_sender(real: Rspamd) -> None:
    envelope = {**ENVELOPE, "mail_from": "", "client_ip": None, "helo": None}
    spam = await real.check(bytearray(CLEAN), **envelope)  # type: ignore[arg-type]
    assert spam.action == "no action"


async def test_rspamd_sees_the_envelope_we_send(real: Rspamd) -> None:
    # The same message, its envelope at odds with its From: and To: fields: rspamd's
    # forged_recipients module scores FORGED_RECIPIENTS (2.0) and FORGED_SENDER (0.3),
    # which it can only do when our From and Rcpt headers reach it.
    # From a loopback address: rspamd skips its reverse DNS look-up, whose outcome (no DNS
    # here) varies from one check to the next and would blur the scores.
    local = {**ENVELOPE, "client_ip": "127.0.0.1"}
    honest = await real.check(CLEAN, **local)  # type: ignore[arg-type]
    forged_envelope = {
        **local,
        "mail_from": "bob@other.example",
        "recipients": ["x@elsewhere.example"],
    }
    forged = await real.check(CLEAN, **forged_envelope)  # type: ignore[arg-type]
    assert forged.score - honest.score >= 2.0


# A peer that records the request.


@asynccontextmanager
async def peer(
    session: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A raw server on 127.0.0.1 running ``session`` for each connection; yields its URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await session(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[list[tuple[str, str]], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")[1:-2]
    headers = [(n.strip().lower(), v.strip()) for n, _, v in (x.partition(":") for x in lines)]
    length = int(dict(headers)["content-length"])
    return headers, await reader.readexactly(length)


def reply(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body)
    return b"HTTP/1.1 " + status + b"\r\n" + length + extra + b"\r\n" + body


VERDICT = b'{"action":"add header","score":7.25,"required_score":15.0,"symbols":{}}'


async def test_rspamd_sends_the_envelope_as_headers_and_the_content_byte_for_byte() -> None:
    seen: list[tuple[list[tuple[str, str]], bytes]] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(reply(VERDICT))
        await writer.drain()

    # Not UTF-8, a bare LF, a NUL and a line with a leading dot: all sent as they are.
    content = b"Subject: x\r\n\r\n\xff\xfe latin-1 \xe9\n\x00\r\n.dot\r\n"
    async with peer(session) as url:
        client = Rspamd(url, password="s3cret")
        try:
            spam = await client.check(bytearray(content), **ENVELOPE)  # type: ignore[arg-type]
        finally:
            await client.aclose()
    assert spam == Spam("add header", 7.25, 15.0)
    [(headers, body)] = seen
    assert body == content
    envelope = [(n, v) for n, v in headers if n in ENVELOPE_NAMES]
    assert envelope == [
        ("ip", "192.0.2.25"),
        ("helo", "mail.sender.example"),
        ("from", SENDER),
        ("rcpt", RECIPIENTS[0]),
        ("rcpt", RECIPIENTS[1]),
        ("queue-id", "q-0001"),
        ("mta-name", "mx.mailroute.example"),
        ("password", "s3cret"),
    ]
    assert ("accept-encoding", "identity") in headers


ENVELOPE_NAMES = {"ip", "helo", "from", "rcpt", "queue-id", "mta-name", "password", "hostname"}


async def test_rspamd_null_sender_is_sent_as_angle_brackets_and_unknowns_are_left_out() -> None:
    seen: list[tuple[list[tuple[str, str]], bytes]] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(reply(VERDICT))
        await writer.drain()

    envelope = {**ENVELOPE, "mail_from": "", "client_ip": None, "helo": None}
    envelope["recipients"] = ["jörg@mailroute.example"]
    async with peer(session) as url:
        client = Rspamd(url)
        try:
            await client.check(b"x", **envelope)  # type: ignore[arg-type]
        finally:
            await client.aclose()
    [(headers, _)] = seen
    assert [(n, v) for n, v in headers if n in ENVELOPE_NAMES] == [
        ("from", "<>"),
        ("rcpt", "jörg@mailroute.example"),  # UTF-8, as SMTPUTF8 (RFC 6531) gave it
        ("queue-id", "q-0001"),
        ("mta-name", "mx.mailroute.example"),
    ]


async def test_rspamd_control_characters_cannot_add_a_header() -> None:
    seen: list[tuple[list[tuple[str, str]], bytes]] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(reply(VERDICT))
        await writer.drain()

    envelope = {**ENVELOPE, "helo": "evil\r\nSettings: {actions {reject = null;}}"}
    async with peer(session) as url:
        client = Rspamd(url)
        try:
            await client.check(b"x", **envelope)  # type: ignore[arg-type]
        finally:
            await client.aclose()
    [(headers, _)] = seen
    assert ("helo", "evilSettings: {actions {reject = null;}}") in headers
    assert "settings" not in {name for name, _ in headers}


# Peers that do not answer as rspamd does.


async def check(url: str, limit: float = 5.0) -> Spam:
    client = Rspamd(url, timeout=limit)
    try:
        return await client.check(CLEAN, **ENVELOPE)  # type: ignore[arg-type]
    finally:
        await client.aclose()


async def test_rspamd_not_listening_is_unavailable_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(SpamFilterUnavailable, match="ConnectError"):
        await check(f"http://127.0.0.1:{free_port()}")
    assert time.monotonic() - started < 1.0


NONSENSE = {
    "not-json": reply(b"<html>rspamd is down</html>"),
    "json-list": reply(b'["reject", 20]'),
    "unknown-action": reply(b'{"action":"delete everything","score":1.0}'),
    "action-not-text": reply(b'{"action":1,"score":1.0}'),
    "score-text": reply(b'{"action":"no action","score":"1.0"}'),
    "score-bool": reply(b'{"action":"no action","score":true}'),
    "score-nan": reply(b'{"action":"no action","score":NaN}'),
    "score-infinite": reply(b'{"action":"no action","score":1e999}'),
    "score-missing": reply(b'{"action":"no action"}'),
    "deep-nesting": reply(b"[" * 100_000 + b"]" * 100_000),
    "status-500": reply(b'{"error":"internal"}', b"500 Internal Server Error"),
    "gzipped": reply(b"\x1f\x8b\x08\x00", extra=b"Content-Encoding: gzip\r\n"),
    "not-http": b"SSH-2.0-OpenSSH_9.2\r\n",
}


@pytest.mark.parametrize("answer", NONSENSE.values(), ids=NONSENSE.keys())
async def test_rspamd_nonsense_reply_is_unavailable(answer: bytes) -> None:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with peer(session) as url:
        with pytest.raises(SpamFilterUnavailable):
            await check(url)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_rspamd_reply_over_a_mebibyte_is_unavailable(declared: bool) -> None:
    sent = 0

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        size = 64 * MAX_REPLY_BYTES  # past what loopback's socket buffers take in
        framing = b"Content-Length: %d" % size if declared else b"Transfer-Encoding: chunked"
        writer.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n")
        chunk = b" " * 65536
        while sent < size:
            writer.write(chunk if declared else b"10000\r\n" + chunk + b"\r\n")
            await writer.drain()
            sent += len(chunk)

    async with peer(session) as url:
        with pytest.raises(SpamFilterUnavailable, match="bytes"):
            await check(url)
    assert sent < 64 * MAX_REPLY_BYTES  # it stopped reading, not the peer sending


async def test_rspamd_silent_peer_is_unavailable_after_the_timeout() -> None:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never a byte back, until the client gives up

    async with peer(session) as url:
        started = time.monotonic()
        with pytest.raises(SpamFilterUnavailable, match="no reply within 0.3 s"):
            await check(url, limit=0.3)
        assert 0.3 <= time.monotonic() - started < 2.0


async def test_rspamd_trickled_reply_is_cut_at_the_overall_timeout() -> None:
    # A byte each 0.1 s keeps every single read within httpx's timeout, never the whole.
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.1)

    async with peer(session) as url:
        started = time.monotonic()
        with pytest.raises(SpamFilterUnavailable, match="no reply within 0.5 s"):
            await check(url, limit=0.5)
        assert time.monotonic() - started < 2.0


# The reply, read alone.


@pytest.mark.parametrize(
    ("action", "kept"),
    [
        ("soft reject", "soft reject"),
        ("soft_reject", "soft reject"),
        ("greylist", "greylist"),
        ("rewrite subject", "rewrite subject"),
        ("add_header", "add header"),
        ("No Action", "no action"),
        ("discard", "reject"),
        ("quarantine", "reject"),
    ],
)
def test_rspamd_parse_reply_names_the_action_as_verdicts_do(action: str, kept: str) -> None:
    body = b'{"action":"%s","score":-1}' % action.encode()
    assert parse_reply(body) == Spam(kept, -1.0, None)


def test_rspamd_parse_reply_drops_a_required_score_that_is_not_a_number() -> None:
    body = b'{"action":"no action","score":0.5,"required_score":"15"}'
    assert parse_reply(body) == Spam("no action", 0.5, None)


def test_rspamd_parse_reply_refuses_an_integer_past_any_float() -> None:
    with pytest.raises(SpamFilterUnavailable, match="score"):
        parse_reply(b'{"action":"no action","score":1' + b"0" * 400 + b"}")


@pytest.mark.parametrize("url", ["127.0.0.1:11333", "ftp://rspamd.example/", "http://"])
def test_rspamd_refuses_a_url_that_is_not_http(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        Rspamd(url)
