"""rspamd over the wire: a real server asks a real rspamd once per message at the end of
DATA, and its action decides the reply; X-Spam fields go on the forwarded copy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.inbound_auth.policy import Mode
from app.inbound_auth.rspamd import Rspamd
from app.smtp import replies
from tests.inbound_auth.live import activity_rows, checking, message, send, whole
from tests.inbound_auth.test_rspamd import VERDICT, peer, read_request, reply
from tests.peers.dnsmasq import Dnsmasq
from tests.smtp.conftest import in_thread
from tests.smtp.stored import Sessionmaker, stored_messages

pytestmark = pytest.mark.dnsmasq

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SENDER = "alice@pass.auth.test"  # SPF passes: only the content decides


def spam() -> bytes:
    return message(SENDER).replace(b"Hello, checks.", GTUBE)


@pytest.fixture
async def spam_filter(rspamd_url: str) -> AsyncIterator[Rspamd]:
    client = Rspamd(rspamd_url, timeout=30.0)
    yield client
    # InboundChecks.aclose closes it too; closing twice is harmless.
    await client.aclose()


async def test_gtube_is_refused_and_logged(
    sessionmaker: Sessionmaker, routed: None, dns_server: Dnsmasq, spam_filter: Rspamd
) -> None:
    nameserver = (dns_server.host, dns_server.port)
    async with checking(sessionmaker, nameserver, spam_filter=spam_filter) as live:
        answer = await in_thread(send, live, SENDER, spam())
    assert whole(answer) == replies.S550_SPAM
    assert await stored_messages(sessionmaker) == []
    [row] = await activity_rows(sessionmaker)
    assert (row.status, row.spam_action, row.spf) == ("rejected", "reject", "pass")
    assert row.spam_score is not None and row.spam_score >= 15  # GTUBE: the reject score


async def test_clean_message_is_forwarded_with_its_score(
    sessionmaker: Sessionmaker, routed: None, dns_server: Dnsmasq, spam_filter: Rspamd
) -> None:
    nameserver = (dns_server.host, dns_server.port)
    text = message(SENDER)
    async with checking(sessionmaker, nameserver, spam_filter=spam_filter) as live:
        answer = await in_thread(send, live, SENDER, text)
    assert answer[0] == 250, answer
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(text)
    fields = stored.content[: -len(text)]
    assert b"\r\nX-Spam-Status: No, score=" in fields
    assert f"\r\nX-Spam-Score: {stored.spam_score:.2f}\r\n".encode() in fields
    assert stored.spam_action == "no action"


async def test_record_mode_forwards_spam_with_its_verdict(
    sessionmaker: Sessionmaker, routed: None, dns_server: Dnsmasq, spam_filter: Rspamd
) -> None:
    nameserver = (dns_server.host, dns_server.port)
    async with checking(
        sessionmaker, nameserver, mode=Mode.RECORD, spam_filter=spam_filter
    ) as live:
        answer = await in_thread(send, live, SENDER, spam())
    assert answer[0] == 250, answer
    [stored] = await stored_messages(sessionmaker)
    assert stored.spam_action == "reject" and b"X-Spam-Status: Yes" in stored.content


@pytest.mark.parametrize(
    ("tempfail", "expected"), [(False, 250), (True, 451)], ids=["accept", "tempfail"]
)
async def test_rspamd_down_accepts_or_defers(
    sessionmaker: Sessionmaker,
    routed: None,
    dns_server: Dnsmasq,
    tempfail: bool,
    expected: int,
) -> None:
    nameserver = (dns_server.host, dns_server.port)
    closed = Rspamd("http://127.0.0.1:9", timeout=2.0)  # the discard port: nothing listens
    async with checking(
        sessionmaker, nameserver, spam_filter=closed, tempfail_spam=tempfail
    ) as live:
        answer = await in_thread(send, live, SENDER, message(SENDER))
    assert answer[0] == expected, answer
    if tempfail:
        assert whole(answer) == replies.S451_SPAM_FILTER_UNAVAILABLE
    else:
        [stored] = await stored_messages(sessionmaker)
        assert b"X-Spam-" not in stored.content and stored.spam_action is None


async def test_rspamd_is_asked_once_per_message(
    sessionmaker: Sessionmaker, routed: None, dns_server: Dnsmasq
) -> None:
    requests: list[list[tuple[str, str]]] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                headers, _body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            requests.append(headers)
            writer.write(reply(VERDICT))
            await writer.drain()

    nameserver = (dns_server.host, dns_server.port)
    async with peer(answer) as url:
        recorded = Rspamd(url, timeout=5.0)
        async with checking(sessionmaker, nameserver, spam_filter=recorded) as live:
            recipients = ("shop@example.org", "shop+a@example.org", "shop+b@example.org")
            answered = await in_thread(send, live, SENDER, message(SENDER), *recipients)
    assert answered[0] == 250, answered
    [request] = requests
    assert [value for name, value in request if name == "rcpt"] == list(recipients)
    [stored] = await stored_messages(sessionmaker)
    assert b"X-Spam-Status: Yes, score=7.25 required=15.00 action=add_header" in stored.content
