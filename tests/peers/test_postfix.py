"""The Postfix test peer, through smtplib: what it offers, accepts, refuses and delivers."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable

import pytest

from tests.peers.maildir import header, headers, received_over_tls, received_protocol
from tests.peers.postfix import (
    S550_UNKNOWN_MAILBOX,
    S554_RELAY_DENIED,
    UNKNOWN_MAILBOX,
    Postfix,
)
from tests.peers.processes import processes_in_group

pytestmark = pytest.mark.postfix

SENDER = "sender@client.example"
CLIENT_NAME = "client.example"


def message(to: str, subject: str, body: str = "Hello.\n") -> bytes:
    """A message as it goes on the wire: lines end in CRLF (RFC 5322 section 2.1)."""
    text = f"From: Sender <{SENDER}>\nTo: <{to}>\nSubject: {subject}\n\n{body}"
    return text.replace("\n", "\r\n").encode()


def stored(sent: bytes) -> bytes:
    """``sent`` as a Maildir file holds it: lines end in LF, the local convention."""
    return sent.replace(b"\r\n", b"\n")


def send(
    server: Postfix, to: str, data: bytes, options: tuple[str, ...] = (), sender: str = SENDER
) -> None:
    with smtplib.SMTP(server.host, server.port, local_hostname=CLIENT_NAME) as client:
        client.sendmail(sender, [to], data, mail_options=list(options))


def rcpt_reply(server: Postfix, to: str) -> str:
    with smtplib.SMTP(server.host, server.port, local_hostname=CLIENT_NAME) as client:
        client.ehlo()
        client.mail(SENDER)
        code, text = client.rcpt(to)
    return f"{code} {text.decode()}"


def test_postfix_offers_8bitmime_and_smtputf8(postfix: Postfix) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, local_hostname=CLIENT_NAME) as client:
        client.ehlo()
        offered = {name for name in ("8bitmime", "smtputf8", "starttls") if client.has_extn(name)}
    assert offered == {"8bitmime", "smtputf8"}


def test_postfix_delivers_the_bytes_sent(postfix: Postfix) -> None:
    mailbox = postfix.mailbox("exact")
    body = "Line one.\n.A line starting with a dot\nFrom the start of a line\ncaf\u00e9 8-bit\n"
    sent = message(mailbox, "Exact", body)

    send(postfix, mailbox, sent, ("BODY=8BITMIME",))

    [delivered] = postfix.wait_for(mailbox)
    assert delivered.endswith(stored(sent))
    added = [name for name, _ in headers(delivered[: -len(stored(sent))] + b"\n")]
    assert added == ["Return-Path", "Delivered-To", "Received"]
    assert header(delivered, "Return-Path") == f"<{SENDER}>"
    assert header(delivered, "Delivered-To") == mailbox


def test_postfix_keeps_mailboxes_apart(postfix: Postfix) -> None:
    first, second = postfix.mailbox("first"), postfix.mailbox("second")

    send(postfix, first, message(first, "For the first"))
    send(postfix, second, message(second, "For the second"))

    assert [header(m, "Subject") for m in postfix.wait_for(second)] == ["For the second"]
    assert [header(m, "Subject") for m in postfix.wait_for(first)] == ["For the first"]


def test_postfix_refuses_unknown_mailbox_at_rcpt(postfix: Postfix) -> None:
    reply = rcpt_reply(postfix, UNKNOWN_MAILBOX)

    assert reply == S550_UNKNOWN_MAILBOX.format(address=UNKNOWN_MAILBOX)


def test_postfix_refuses_to_relay(postfix: Postfix) -> None:
    reply = rcpt_reply(postfix, "someone@elsewhere.example")

    assert reply == S554_RELAY_DENIED.format(address="someone@elsewhere.example")


def test_postfix_accepts_smtputf8(postfix: Postfix) -> None:
    mailbox, sender = postfix.mailbox("j\u00fcrgen"), "m\u00fcller@client.example"
    sent = message(mailbox, "Gr\u00fc\u00dfe", "Hall\u00f6\n")

    send(postfix, mailbox, sent, ("SMTPUTF8", "BODY=8BITMIME"), sender=sender)

    [delivered] = postfix.wait_for(mailbox)
    assert delivered.endswith(stored(sent))
    assert (header(delivered, "Return-Path"), header(delivered, "Delivered-To")) == (
        f"<{sender}>",
        mailbox,
    )
    assert received_protocol(delivered) == "UTF8SMTP"


def test_postfix_received_says_esmtp_without_tls(postfix: Postfix) -> None:
    mailbox = postfix.mailbox("plain")

    send(postfix, mailbox, message(mailbox, "Plain"))

    [delivered] = postfix.wait_for(mailbox)
    assert (received_protocol(delivered), received_over_tls(delivered)) == ("ESMTP", False)


def test_postfix_stopped_refuses_connections_and_starts_again(postfix: Postfix) -> None:
    mailbox = postfix.mailbox("restart")
    send(postfix, mailbox, message(mailbox, "Before"))
    postfix.wait_for(mailbox)

    postfix.stop()
    with pytest.raises(ConnectionRefusedError):
        send(postfix, mailbox, message(mailbox, "While down"))
    postfix.start()
    send(postfix, mailbox, message(mailbox, "After"))

    delivered = postfix.wait_for(mailbox, 2)
    assert [header(m, "Subject") for m in delivered] == ["Before", "After"]


def test_postfix_stop_leaves_no_processes(postfix: Postfix) -> None:
    group = postfix.pid
    assert group is not None and processes_in_group(group)

    postfix.stop()

    assert processes_in_group(group) == []


def test_postfix_wait_for_lists_what_arrived(postfix: Postfix) -> None:
    other, wanted = postfix.mailbox("other"), postfix.mailbox("wanted")
    send(postfix, other, message(other, "Not for wanted"))
    postfix.wait_for(other)

    with pytest.raises(AssertionError) as failure:
        postfix.wait_for(wanted, timeout=0.2)

    assert f"{wanted}: 0 of 1 message(s) after 0.2 s" in str(failure.value)
    assert f"to='{other}' subject='Not for wanted'" in str(failure.value)


def test_postfix_tls_offers_starttls(postfix_tls: Postfix) -> None:
    with smtplib.SMTP(postfix_tls.host, postfix_tls.port, local_hostname=CLIENT_NAME) as client:
        client.ehlo()

        assert client.has_extn("starttls")


def test_postfix_tls_received_says_esmtps(postfix_tls: Postfix) -> None:
    mailbox = postfix_tls.mailbox("secure")
    context = ssl.create_default_context(cafile=str(postfix_tls.certificate))

    with smtplib.SMTP(postfix_tls.host, postfix_tls.port, local_hostname=CLIENT_NAME) as client:
        client.starttls(context=context)
        client.sendmail(SENDER, [mailbox], message(mailbox, "Secure"))

    [delivered] = postfix_tls.wait_for(mailbox)
    assert (received_protocol(delivered), received_over_tls(delivered)) == ("ESMTPS", True)


def test_postfix_factory_accepts_only_listed_mailboxes(
    postfix_factory: Callable[..., Postfix],
) -> None:
    server = postfix_factory(domains=["listed.example"], mailboxes=["alice@listed.example"])

    send(server, "alice@listed.example", message("alice@listed.example", "Listed"))

    assert len(server.wait_for("alice@listed.example")) == 1
    assert rcpt_reply(server, "bob@listed.example") == S550_UNKNOWN_MAILBOX.format(
        address="bob@listed.example"
    )
