"""When the destination refuses or is down, against a real Postfix: DSNs to the sender,
refusals in session, retries, and bounces coming back through SRS."""

from __future__ import annotations

import asyncio
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from app.db.engine import session_scope
from app.db.types import utcnow
from app.delivery import dsn
from app.services import queue
from app.smtp import replies
from tests.integration.conftest import (
    MAX_MESSAGE_SIZE,
    Mailroute,
    as_sent,
    message,
    stored,
    wait_for,
)
from tests.peers.maildir import header
from tests.peers.postfix import UNKNOWN_MAILBOX, Postfix

pytestmark = [pytest.mark.postfix, pytest.mark.dnsmasq]

QUEUED = re.compile(r"250 2\.0\.0 Message accepted for delivery, queue id [0-9a-f]{12}")


def parse(content: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(parsed, EmailMessage)
    return parsed


def delivery_status(dsn: EmailMessage) -> list[dict[str, str]]:
    """The per-message and per-recipient fields of a DSN's message/delivery-status part
    (RFC 3464 2.1), as dictionaries."""
    [part] = [p for p in dsn.walk() if p.get_content_type() == "message/delivery-status"]
    groups = part.get_payload()
    assert isinstance(groups, list)
    return [{k: str(v) for k, v in group.items()} for group in groups if not isinstance(group, str)]


async def test_bounce_delivers_dsn_to_sender_from_null_sender(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    sender = postfix.mailbox("bounced-sender")
    alias = await mailroute.forward("gone@example.org", UNKNOWN_MAILBOX)

    sending = await mailroute.send(sender, [alias], message(sender, alias, "Will bounce"))
    await mailroute.deliver()  # the refusal, then the DSN it queued

    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending
    [delivered] = await wait_for(postfix, sender)
    dsn = parse(delivered)
    assert header(delivered, "Return-Path") == "<>"
    assert (dsn.get_content_type(), dsn.get_param("report-type")) == (
        "multipart/report",
        "delivery-status",
    )
    recipient = delivery_status(dsn)[1]
    assert (recipient["Final-Recipient"], recipient["Action"], recipient["Status"]) == (
        f"rfc822; {alias}",
        "failed",
        "5.1.1",
    )


async def test_bounce_dsn_does_not_reveal_destination(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    sender = postfix.mailbox("curious-sender")
    alias = await mailroute.forward("hidden@example.org", UNKNOWN_MAILBOX)

    await mailroute.send(sender, [alias], message(sender, alias, "Where does it go?"))
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, sender)
    dsn = as_sent(delivered).lower()
    assert alias.encode() in dsn
    for revealing in (UNKNOWN_MAILBOX, postfix.settings.hostname, postfix.host):
        assert revealing.encode() not in dsn, revealing


async def test_bounce_dsn_quotes_at_most_64_kib_of_header_cut_at_a_field(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    sender = postfix.mailbox("long-header-sender")
    alias = await mailroute.forward("long-header@example.org", UNKNOWN_MAILBOX)
    # Three times the quoted limit in header fields, each folded once (RFC 5322 2.2.3),
    # within this mailroute's MAX_MESSAGE_SIZE (tests/delivery/test_dsn.py quotes 1 MB).
    filler = [f"X-Filler-{n}: {'a' * 480}\n\t{'b' * 400}" for n in range(220)]
    sent = message(sender, alias, "Long header", extra=filler)
    assert 3 * dsn.MAX_QUOTED_HEADER < len(sent) < MAX_MESSAGE_SIZE

    sending = await mailroute.send(sender, [alias], sent)
    await mailroute.deliver()

    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending

    [delivered] = await wait_for(postfix, sender)
    [quoted] = [p for p in parse(delivered).walk() if p.get_content_type() == "text/rfc822-headers"]
    headers = quoted.get_payload(decode=True)
    assert isinstance(headers, bytes)
    assert 0 < len(headers) <= dsn.MAX_QUOTED_HEADER
    assert b"\nSubject: Long header" in headers
    # Cut after a whole field: its continuation line and line end are there.
    assert headers.endswith((b"\t" + b"b" * 400 + b"\n", b"\t" + b"b" * 400 + b"\r\n"))
    assert headers.count(b"X-Filler-") < 80


async def test_bounce_logged_as_bounced(mailroute: Mailroute, postfix: Postfix) -> None:
    sender = postfix.mailbox("logged-sender")
    alias = await mailroute.forward("refused@example.org", UNKNOWN_MAILBOX)

    await mailroute.send(sender, [alias], message(sender, alias, "Logged bounce"))
    await mailroute.deliver()

    rows = await mailroute.activity()
    # The failed forward, then the DSN's own delivery to the sender.
    assert [(a.status, a.address, a.destination) for a in rows] == [
        ("bounced", alias, UNKNOWN_MAILBOX),
        ("forwarded", sender, sender),
    ]
    assert rows[0].reply is not None and rows[0].reply.startswith("550 5.1.1 ")


async def test_inline_refusal_is_the_data_reply(
    mailroute_inline: Mailroute, postfix: Postfix
) -> None:
    sender = postfix.mailbox("refused-in-session")
    alias = await mailroute_inline.forward("refused@example.org", UNKNOWN_MAILBOX)

    sending = await mailroute_inline.send(sender, [alias], message(sender, alias, "Refused"))

    assert sending.data is not None and sending.data.startswith(f"550 5.1.1 <{alias}>: "), sending
    assert "inbox.example" not in sending.data  # neither the destination nor its domain


async def test_inline_refusal_queues_no_dsn(mailroute_inline: Mailroute, postfix: Postfix) -> None:
    sender = postfix.mailbox("no-backscatter")
    alias = await mailroute_inline.forward("refused@example.org", UNKNOWN_MAILBOX)

    await mailroute_inline.send(sender, [alias], message(sender, alias, "Refused"))

    assert await mailroute_inline.deliveries() == []
    assert await mailroute_inline.stored_messages() == 0
    assert await mailroute_inline.deliver() == 0
    assert [a.status for a in await mailroute_inline.activity()] == ["rejected"]


async def test_inline_delivery_replies_delivered(
    mailroute_inline: Mailroute, postfix: Postfix
) -> None:
    destination = postfix.mailbox("inline")
    alias = await mailroute_inline.forward("inline@example.org", destination)
    sent = message("alice@sender.example", alias, "In session")

    sending = await mailroute_inline.send("alice@sender.example", [alias], sent)

    assert sending.data is not None and re.fullmatch(
        r"250 2\.0\.0 Message delivered, queue id [0-9a-f]{12}", sending.data
    ), sending
    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))


async def test_inline_destination_down_queues_with_250(
    mailroute_inline: Mailroute, postfix: Postfix
) -> None:
    alias = await mailroute_inline.forward("later@example.org", postfix.mailbox("later"))
    await asyncio.to_thread(postfix.stop)

    sending = await mailroute_inline.send(
        "alice@sender.example", [alias], message("alice@sender.example", alias, "Later")
    )

    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending
    [delivery] = await mailroute_inline.deliveries()
    assert (delivery.status, delivery.attempts) == (queue.QUEUED, 1)


async def test_retry_delivers_once_destination_is_back(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    destination = postfix.mailbox("retried")
    alias = await mailroute.forward("retry@example.org", destination)
    sent = message("alice@sender.example", alias, "Retried")
    await asyncio.to_thread(postfix.stop)
    await mailroute.send("alice@sender.example", [alias], sent)

    assert await mailroute.deliver() == 1
    [deferred] = await mailroute.deliveries()
    assert (deferred.status, deferred.attempts) == (queue.QUEUED, 1)
    assert [a.status for a in await mailroute.activity()] == ["deferred"]
    assert await mailroute.deliver() == 0  # not due for another minute

    await asyncio.to_thread(postfix.start)
    async with session_scope(mailroute.sessionmaker) as session:
        await queue.retry_now(session, deferred.id, utcnow())
    assert await mailroute.deliver() == 1

    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))
    assert [a.status for a in await mailroute.activity()] == ["deferred", "forwarded"]


async def test_srs_bounce_returns_to_original_sender(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    sender, destination = postfix.mailbox("origin"), postfix.mailbox("forwarded-to")
    alias = await mailroute.forward("srs-bounce@example.org", destination)
    await mailroute.send(sender, [alias], message(sender, alias, "Forwarded"))
    await mailroute.deliver()
    [forwarded] = await wait_for(postfix, destination)
    srs_address = (header(forwarded, "Return-Path") or "").strip("<>")
    bounce = message("", srs_address, "Undelivered Mail Returned to Sender")

    sending = await mailroute.send("", [srs_address], bounce)
    await mailroute.deliver()

    assert sending.rcpt == [replies.S250_RECIPIENT_OK]
    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending
    [returned] = await wait_for(postfix, sender)
    assert header(returned, "Return-Path") == "<>"
    assert returned.endswith(stored(bounce))


async def test_srs_forged_address_refused_at_rcpt(mailroute: Mailroute, postfix: Postfix) -> None:
    genuine = mailroute.srs.forward(postfix.mailbox("forged"))
    _srs0, hash_, rest = genuine.split("=", 2)
    forged = f"SRS0={'AAAA' if hash_.upper() != 'AAAA' else 'BBBB'}={rest}"

    sending = await mailroute.send("", [forged], message("", forged, "Forged bounce"))

    assert sending.rcpt == [replies.S550_BAD_SRS.format(address=forged)]
    assert (await mailroute.stored_messages(), await mailroute.deliveries()) == (0, [])


async def test_srs_garbled_address_refused_at_rcpt(mailroute: Mailroute) -> None:
    garbled = f"SRS0=nonsense@{mailroute.srs.domain}"

    sending = await mailroute.send("", [garbled], message("", garbled, "Garbled bounce"))

    assert sending.rcpt == [replies.S550_BAD_SRS.format(address=garbled)]


async def test_srs_genuine_address_from_a_sender_refused_at_rcpt(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    # A real SRS address is public (every destination sees it as Return-Path): used by
    # anyone but the null sender, it would relay their mail to the original sender.
    genuine = mailroute.srs.forward(postfix.mailbox("srs-target"))
    spam = message("spammer@spam.example", genuine, "Not a bounce")

    sending = await mailroute.send("spammer@spam.example", [genuine], spam)

    assert sending.rcpt == [replies.S550_SRS_NOT_BOUNCE.format(address=genuine)]
    assert (await mailroute.stored_messages(), await mailroute.deliveries()) == (0, [])


@pytest.mark.parametrize("length", [1, 2, 3])
async def test_srs_truncated_hash_refused_at_rcpt(mailroute: Mailroute, length: int) -> None:
    genuine = mailroute.srs.forward("victim@victim.example")
    _srs0, hash_, rest = genuine.split("=", 2)
    forged = f"SRS0={hash_[:length]}={rest}"

    sending = await mailroute.send("", [forged], message("", forged, "Forged bounce"))

    assert sending.rcpt == [replies.S550_BAD_SRS.format(address=forged)]
    assert (await mailroute.stored_messages(), await mailroute.deliveries()) == (0, [])
