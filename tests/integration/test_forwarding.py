"""Mail sent to mailroute with smtplib reaches the destination's Maildir at a real Postfix,
found by MX through dnsmasq; and what mailroute refuses at RCPT or DATA goes nowhere."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import dkim  # type: ignore[import-untyped]
import dns.resolver
import pytest

from app.inbound_auth.policy import Mode
from app.routing import parse_address
from app.smtp import replies
from tests.conftest import HOSTNAME
from tests.integration.conftest import (
    CATCH_ALL_DOMAIN,
    CLIENT_NAME,
    DKIM_DOMAIN,
    DKIM_SELECTOR,
    MAX_MESSAGE_SIZE,
    Mailroute,
    MailrouteFactory,
    message,
    stored,
    wait_for,
)
from tests.peers.dkim_keys import Key
from tests.peers.dnsmasq import Dnsmasq
from tests.peers.maildir import header, headers, received_over_tls, received_protocol
from tests.peers.postfix import Postfix

pytestmark = [pytest.mark.postfix, pytest.mark.dnsmasq]

SENDER = "alice@sender.example"
QUEUED = re.compile(r"250 2\.0\.0 Message accepted for delivery, queue id [0-9a-f]{12}")
SRS0 = re.compile(r"SRS0=[^=@]+=[^=@]+=(?P<domain>[^=@]+)=(?P<local>[^@]+)@(?P<host>.+)")


def added_headers(delivered: bytes, sent: bytes) -> list[tuple[str, str]]:
    """The header fields above the bytes sent: what Postfix and mailroute put on top."""
    assert delivered.endswith(stored(sent)), delivered[:600]
    return headers(delivered[: -len(stored(sent))] + b"\n")


async def test_forward_reaches_destination_maildir(mailroute: Mailroute, postfix: Postfix) -> None:
    destination = postfix.mailbox("one")
    alias = await mailroute.forward("shop@example.org", destination)
    sent = message(SENDER, alias, "One destination")

    sending = await mailroute.send(SENDER, [alias], sent)
    handled = await mailroute.deliver()

    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending
    assert handled == 1
    [delivered] = await wait_for(postfix, destination)
    assert header(delivered, "Subject") == "One destination"


async def test_forward_to_several_destinations_reaches_each(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    first, second = postfix.mailbox("first"), postfix.mailbox("second")
    alias = await mailroute.forward("team@example.org", first, second)
    sent = message(SENDER, alias, "Two destinations")

    await mailroute.send(SENDER, [alias], sent)
    await mailroute.deliver()

    for destination in (first, second):
        [delivered] = await wait_for(postfix, destination)
        assert delivered.endswith(stored(sent)), destination


async def test_drop_accepts_and_delivers_nothing(mailroute: Mailroute, postfix: Postfix) -> None:
    alias = await mailroute.drop("nothing@example.org")

    sending = await mailroute.send(SENDER, [alias], message(SENDER, alias, "Dropped"))

    assert sending.data == replies.S250_DROPPED
    assert await mailroute.deliver() == 0
    assert await mailroute.stored_messages() == 0
    assert [(a.status, a.address, a.action) for a in await mailroute.activity()] == [
        ("dropped", alias, "drop")
    ]


async def test_catch_all_forwards_any_address(mailroute: Mailroute, postfix: Postfix) -> None:
    destination = postfix.mailbox("catchall")
    await mailroute.forward(f"*@{CATCH_ALL_DOMAIN}", destination)
    anything = f"whatever-{destination.partition('@')[0]}@{CATCH_ALL_DOMAIN}"
    sent = message(SENDER, anything, "Caught")

    sending = await mailroute.send(SENDER, [anything], sent)
    await mailroute.deliver()

    assert sending.rcpt == [replies.S250_RECIPIENT_OK]
    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))


async def test_plus_address_forwards_to_base_alias(mailroute: Mailroute, postfix: Postfix) -> None:
    destination = postfix.mailbox("plus")
    await mailroute.forward("shop@example.org", destination)
    tagged = "shop+news@example.org"
    sent = message(SENDER, tagged, "Tagged")

    sending = await mailroute.send(SENDER, [tagged], sent)
    await mailroute.deliver()

    assert sending.rcpt == [replies.S250_RECIPIENT_OK]
    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))


async def test_smtp_unknown_recipient_refused_at_rcpt(mailroute: Mailroute) -> None:
    unknown = "nobody@example.org"

    sending = await mailroute.send(SENDER, [unknown], message(SENDER, unknown, "Unknown"))

    assert sending.rcpt == [replies.S550_UNKNOWN_ADDRESS.format(address=unknown)]
    assert (await mailroute.stored_messages(), await mailroute.deliveries()) == (0, [])


async def test_smtp_relay_attempt_refused_at_rcpt(mailroute: Mailroute) -> None:
    foreign = "someone@foreign.example"

    sending = await mailroute.send(SENDER, [foreign], message(SENDER, foreign, "Relay"))

    assert sending.rcpt == [replies.S550_RELAY_DENIED.format(domain="foreign.example")]
    assert (await mailroute.stored_messages(), await mailroute.deliveries()) == (0, [])


async def test_smtp_oversized_message_refused_with_552(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    alias = await mailroute.forward("big@example.org", postfix.mailbox("big"))
    body = ("x" * 78 + "\n") * (MAX_MESSAGE_SIZE // 79 + 100)

    sending = await mailroute.send(SENDER, [alias], message(SENDER, alias, "Too big", body))

    assert sending.data is not None and sending.data.startswith("552 5.3.4 "), sending
    assert (await mailroute.stored_messages(), await mailroute.deliveries()) == (0, [])


async def test_forward_keeps_null_sender(mailroute: Mailroute, postfix: Postfix) -> None:
    destination = postfix.mailbox("null")
    alias = await mailroute.forward("notices@example.org", destination)

    await mailroute.send("", [alias], message("", alias, "From the null sender"))
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, destination)
    assert header(delivered, "Return-Path") == "<>"


async def test_forward_keeps_8bit_body_intact(mailroute: Mailroute, postfix: Postfix) -> None:
    destination = postfix.mailbox("eightbit")
    alias = await mailroute.forward("eightbit@example.org", destination)
    body = "Caf\u00e9, na\u00efve, \u00fcber: \u20ac 5.\n.A line with a leading dot\n"
    mime = ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    sent = message(SENDER, alias, "8-bit", body, [*mime, "Content-Transfer-Encoding: 8bit"])

    sending = await mailroute.send(SENDER, [alias], sent, ["BODY=8BITMIME"])
    await mailroute.deliver()

    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending
    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))


async def test_forward_keeps_smtputf8_message_intact(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    destination = postfix.mailbox("utf8")
    alias = await mailroute.forward("utf8@example.org", destination)
    sender = "j\u00fcrgen.m\u00fcller@sender.example"
    sent = message(sender, alias, "Gr\u00fc\u00dfe aus K\u00f6ln", "Hall\u00f6.\n")

    sending = await mailroute.send(sender, [alias], sent, ["SMTPUTF8", "BODY=8BITMIME"])
    await mailroute.deliver()

    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending
    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))
    assert received_protocol(delivered) == "UTF8SMTP"  # relayed with SMTPUTF8
    return_path = header(delivered, "Return-Path") or ""
    assert mailroute.srs.reverse(parse_address(return_path.strip("<>"))) == sender


async def test_forward_keeps_dkim_signature_valid(
    mailroute: Mailroute, postfix: Postfix, dnsmasq: Dnsmasq, dkim_key: Key
) -> None:
    destination = postfix.mailbox("dkim")
    alias = await mailroute.forward("signed@example.org", destination)
    sender = f"alice@{DKIM_DOMAIN}"
    unsigned = message(sender, alias, "Signed", "Signed body.\n\nWith two paragraphs.\n")
    signature = dkim.sign(unsigned, DKIM_SELECTOR.encode(), DKIM_DOMAIN.encode(), dkim_key.private)
    sent = signature + unsigned

    await mailroute.send(sender, [alias], sent)
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, destination)
    assert await asyncio.to_thread(dkim.verify, delivered, dnsfunc=txt_from(dnsmasq))


async def test_forward_checked_keeps_dkim_valid_under_our_authentication_results(
    start_mailroute: MailrouteFactory,
    postfix: Postfix,
    dnsmasq: Dnsmasq,
    dkim_key: Key,
) -> None:
    """With the inbound checks enforced: the DKIM signature passes here (sender.example
    publishes no SPF), and still verifies at the destination below our two fields."""
    mailroute = await start_mailroute(checks=Mode.ENFORCE)
    destination = postfix.mailbox("checked")
    alias = await mailroute.forward("checked@example.org", destination)
    sender = f"alice@{DKIM_DOMAIN}"
    unsigned = message(sender, alias, "Checked", "Checked body.\n")
    sent = (
        dkim.sign(unsigned, DKIM_SELECTOR.encode(), DKIM_DOMAIN.encode(), dkim_key.private)
        + unsigned
    )

    sending = await mailroute.send(sender, [alias], sent)
    await mailroute.deliver()

    assert sending.data is not None and QUEUED.fullmatch(sending.data), sending
    [delivered] = await wait_for(postfix, destination)
    added = added_headers(delivered, sent)
    assert [name for name, _ in added] == [
        "Return-Path",
        "Delivered-To",
        "Received",
        "Received",
        "Authentication-Results",
    ]
    assert added[3][1].startswith(f"from {CLIENT_NAME}")
    results = " ".join(added[4][1].split())
    assert results.startswith(f"{HOSTNAME}; spf=none")
    assert re.search(rf"dkim=pass header\.b=\S+ header\.d={DKIM_DOMAIN} header\.s=sel;", results)
    assert f"dmarc=none header.from={DKIM_DOMAIN}" in results
    assert await asyncio.to_thread(dkim.verify, delivered, dnsfunc=txt_from(dnsmasq))


async def test_forward_checked_refuses_the_unauthenticated(
    start_mailroute: MailrouteFactory, postfix: Postfix
) -> None:
    mailroute = await start_mailroute(checks=Mode.ENFORCE)
    destination = postfix.mailbox("unchecked")
    alias = await mailroute.forward("unchecked@example.org", destination)
    sending = await mailroute.send(SENDER, [alias], message(SENDER, alias, "Unsigned"))
    assert sending.data == replies.S550_UNAUTHENTICATED.format(spf="none", dkim="none")
    assert await mailroute.deliver() == 0
    assert await mailroute.stored_messages() == 0


def txt_from(dnsmasq: Dnsmasq) -> Callable[..., bytes]:
    """dkimpy's DNS function, asking dnsmasq."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [dnsmasq.host], dnsmasq.port

    def lookup(name: bytes, timeout: float = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        return b"".join(b"".join(record.strings) for record in answer)

    return lookup


async def test_forward_adds_only_its_received_header(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    destination = postfix.mailbox("exact")
    alias = await mailroute.forward("exact@example.org", destination)
    sent = message(SENDER, alias, "Exact bytes", "First line.\n\nFrom the start of a line.\n")

    await mailroute.send(SENDER, [alias], sent)
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, destination)
    added = added_headers(delivered, sent)
    # Postfix's virtual(8) adds Return-Path and Delivered-To, smtpd its Received line.
    assert [name for name, _ in added] == ["Return-Path", "Delivered-To", "Received", "Received"]
    assert added[3][1].startswith(
        f"from {CLIENT_NAME} ([127.0.0.1]) by {HOSTNAME} (mailroute) with ESMTP id "
    )


async def test_forward_return_path_is_srs_at_our_hostname(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    destination = postfix.mailbox("srs")
    alias = await mailroute.forward("srs@example.org", destination)

    await mailroute.send(SENDER, [alias], message(SENDER, alias, "Rewritten sender"))
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, destination)
    return_path = (header(delivered, "Return-Path") or "").strip("<>")
    match = SRS0.fullmatch(return_path)
    assert match is not None, return_path
    assert (match["local"], match["domain"], match["host"]) == ("alice", "sender.example", HOSTNAME)
    assert mailroute.srs.reverse(parse_address(return_path)) == SENDER


async def test_forward_logs_forwarded_with_postfix_reply(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    destination = postfix.mailbox("logged")
    alias = await mailroute.forward("logged@example.org", destination)

    await mailroute.send(SENDER, [alias], message(SENDER, alias, "Logged"))
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, destination)
    postfix_id = re.search(r"\bid (\w+)", header(delivered, "Received") or "")
    assert postfix_id is not None
    assert [
        (a.status, a.address, a.destination, a.remote_host, a.reply)
        for a in await mailroute.activity()
    ] == [
        (
            "forwarded",
            alias,
            destination,
            f"{postfix.settings.hostname}[{postfix.host}]",
            f"250 2.0.0 Ok: queued as {postfix_id[1]}",
        )
    ]


async def test_forward_uses_starttls_when_offered(
    mailroute: Mailroute, postfix_tls: Postfix
) -> None:
    destination = postfix_tls.mailbox("secure")
    alias = await mailroute.forward("secure@example.org", destination)

    await mailroute.send(SENDER, [alias], message(SENDER, alias, "Encrypted hop"))
    await mailroute.deliver()

    [delivered] = await wait_for(postfix_tls, destination)
    assert (received_protocol(delivered), received_over_tls(delivered)) == ("ESMTPS", True)


async def test_forward_delivered_message_leaves_the_queue(
    mailroute: Mailroute, postfix: Postfix
) -> None:
    destination = postfix.mailbox("done")
    alias = await mailroute.forward("done@example.org", destination)

    await mailroute.send(SENDER, [alias], message(SENDER, alias, "Done with"))
    await mailroute.deliver()

    await wait_for(postfix, destination)
    # queue.drop_finished_messages: once no delivery waits, the stored content goes.
    assert (await mailroute.stored_messages(), await mailroute.deliveries()) == (0, [])
