"""The inbound checks over the wire: a real server checks SPF, DKIM and DMARC against
records that dnsmasq publishes, with messages signed by dkimpy, and refuses, defers or
forwards as app.inbound_auth.policy says, with our Authentication-Results on top."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from app.inbound_auth.policy import Mode
from app.routing.srs import Srs
from app.smtp import replies
from tests.conftest import HOSTNAME
from tests.inbound_auth.conftest import DKIM_DOMAIN, Key
from tests.inbound_auth.live import (
    ALIAS,
    AR_PREFIX,
    activity_rows,
    checking,
    message,
    send,
    signed,
    whole,
)
from tests.peers.dnsmasq import Dnsmasq
from tests.smtp.conftest import SRS_SECRET, LiveSmtp, in_thread
from tests.smtp.stored import Sessionmaker, stored_messages

pytestmark = pytest.mark.dnsmasq


@pytest.fixture
async def live(
    sessionmaker: Sessionmaker, routed: None, dns_server: Dnsmasq
) -> AsyncIterator[LiveSmtp]:
    async with checking(sessionmaker, (dns_server.host, dns_server.port)) as server:
        yield server


async def test_spf_pass_is_forwarded_with_our_authentication_results(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    text = message("alice@pass.auth.test")
    reply = await in_thread(send, live, "alice@pass.auth.test", text)
    assert reply[0] == 250, reply
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.startswith(b"Received: ")
    # Ours: Received, then Authentication-Results, then exactly what the client sent.
    assert stored.content.endswith(text)
    fields = stored.content[: -len(text)]
    assert fields.count(AR_PREFIX) == 1 and fields.index(AR_PREFIX) > 0
    assert b"spf=pass smtp.mailfrom=alice@pass.auth.test" in fields
    assert (stored.spf, stored.dkim, stored.dmarc, stored.sender_authenticated) == (
        "pass",
        "none",
        "none",
        True,
    )


async def test_no_spf_pass_and_no_dkim_is_refused(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    text = message("alice@fail.auth.test")
    reply = await in_thread(send, live, "alice@fail.auth.test", text)
    assert whole(reply) == replies.S550_UNAUTHENTICATED.format(spf="fail", dkim="none")
    assert await stored_messages(sessionmaker) == []
    [row] = await activity_rows(sessionmaker)
    assert (row.status, row.address, row.spf, row.dkim, row.reply) == (
        "rejected",
        ALIAS,
        "fail",
        "none",
        whole(reply),
    )


@pytest.mark.parametrize("spf", ["softfail", "neutral", "none", "permerror"])
async def test_spf_short_of_pass_without_dkim_is_refused(live: LiveSmtp, spf: str) -> None:
    sender = f"alice@{'syntax' if spf == 'permerror' else spf}.auth.test"
    reply = await in_thread(send, live, sender, message(sender))
    assert whole(reply) == replies.S550_UNAUTHENTICATED.format(spf=spf, dkim="none")


async def test_dmarc_none_policy_is_forwarded_with_its_failure(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    # _dmarc.dmarc.test: p=none. SPF passes for another organization: DMARC fails, and
    # the domain asked for nothing to be done about it.
    reply = await in_thread(send, live, "alice@pass.auth.test", message("news@dmarc.test"))
    assert reply[0] == 250, reply
    [stored] = await stored_messages(sessionmaker)
    assert stored.dmarc == "fail"
    assert b"dmarc=fail header.from=dmarc.test policy.dmarc=none (dis=none)" in stored.content


async def test_valid_dkim_signature_rescues_a_failing_spf(
    live: LiveSmtp, sessionmaker: Sessionmaker, rsa_key: Key
) -> None:
    text = signed(message(f"alice@{DKIM_DOMAIN}"), rsa_key)
    reply = await in_thread(send, live, "alice@fail.auth.test", text)
    assert reply[0] == 250, reply
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(text)
    assert re.search(rb"dkim=pass header\.b=\S+ header\.d=dkim\.auth\.test", stored.content)
    # The signing domain is the envelope domain's organization: a DSN may go to it.
    assert stored.sender_authenticated is True


async def test_dkim_of_another_organization_proves_no_sender(
    live: LiveSmtp, sessionmaker: Sessionmaker, rsa_key: Key
) -> None:
    text = signed(message(f"alice@{DKIM_DOMAIN}"), rsa_key)
    reply = await in_thread(send, live, "alice@reject.dmarc.test", text)
    assert reply[0] == 250, reply
    [stored] = await stored_messages(sessionmaker)
    # Forwarded (a valid signature), but a bounce would go to an unproven address.
    assert (stored.spf, stored.dkim, stored.sender_authenticated) == ("none", "pass", False)


async def test_broken_body_hash_is_no_valid_signature(live: LiveSmtp, rsa_key: Key) -> None:
    text = signed(message(f"alice@{DKIM_DOMAIN}"), rsa_key).replace(b"checks.", b"check!")
    reply = await in_thread(send, live, "alice@fail.auth.test", text)
    assert whole(reply) == replies.S550_UNAUTHENTICATED.format(spf="fail", dkim="fail")


async def test_dmarc_reject_refuses_despite_an_unaligned_spf_pass(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    text = message("ceo@reject.dmarc.test")
    reply = await in_thread(send, live, "alice@pass.auth.test", text)
    assert whole(reply) == replies.S550_DMARC_REJECT.format(domain="reject.dmarc.test")
    [row] = await activity_rows(sessionmaker)
    assert (row.spf, row.dmarc) == ("pass", "fail")


async def test_dmarc_quarantine_is_forwarded_and_logged(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    text = message("news@quarantine.dmarc.test")
    reply = await in_thread(send, live, "alice@pass.auth.test", text)
    assert reply[0] == 250, reply
    [stored] = await stored_messages(sessionmaker)
    assert b"dmarc=fail header.from=quarantine.dmarc.test" in stored.content
    assert stored.dmarc == "fail"


async def test_dmarc_subdomain_policy_applies(live: LiveSmtp) -> None:
    # _dmarc.dmarc.test says p=none; sp=reject: its subdomains without a record
    # of their own are refused.
    text = message("alice@sub.dmarc.test")
    reply = await in_thread(send, live, "alice@pass.auth.test", text)
    assert whole(reply) == replies.S550_DMARC_REJECT.format(domain="sub.dmarc.test")


async def test_forged_authentication_results_are_not_trusted(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    forged = AR_PREFIX + b" spf=pass smtp.mailfrom=fail.auth.test; dkim=pass\r\n"
    text = message("alice@fail.auth.test", extra=forged)
    reply = await in_thread(send, live, "alice@fail.auth.test", text)
    assert whole(reply) == replies.S550_UNAUTHENTICATED.format(spf="fail", dkim="none")


async def test_ours_is_above_an_arriving_authentication_results(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    forged = AR_PREFIX + b" dmarc=pass\r\n"
    text = message("alice@pass.auth.test", extra=forged)
    assert (await in_thread(send, live, "alice@pass.auth.test", text))[0] == 250
    [stored] = await stored_messages(sessionmaker)
    first = stored.content.index(AR_PREFIX)
    assert stored.content.index(b"spf=pass", first) < stored.content.index(forged)


async def test_record_mode_forwards_what_enforce_refuses(
    sessionmaker: Sessionmaker, routed: None, dns_server: Dnsmasq
) -> None:
    nameserver = (dns_server.host, dns_server.port)
    async with checking(sessionmaker, nameserver, mode=Mode.RECORD) as recording:
        text = message("ceo@reject.dmarc.test")
        reply = await in_thread(send, recording, "alice@fail.auth.test", text)
    assert reply[0] == 250, reply
    [stored] = await stored_messages(sessionmaker)
    assert (stored.spf, stored.dmarc) == ("fail", "fail")
    assert b"spf=fail" in stored.content and stored.content.endswith(text)


async def test_dns_that_does_not_answer_defers(
    sessionmaker: Sessionmaker, routed: None, silent_nameserver: tuple[str, int]
) -> None:
    async with checking(sessionmaker, silent_nameserver, lifetime=0.5) as deferring:
        text = message("alice@pass.auth.test")
        reply = await in_thread(send, deferring, "alice@pass.auth.test", text)
    assert whole(reply) == replies.S451_SPF_TEMPERROR.format(domain="pass.auth.test")
    assert await stored_messages(sessionmaker) == []
    [row] = await activity_rows(sessionmaker)
    assert (row.status, row.spf) == ("deferred", "temperror")


async def test_srs_bounce_is_vouched_for_whatever_spf_says(
    live: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    srs = Srs(SRS_SECRET, HOSTNAME)
    bounce_to = srs.forward("alice@fail.auth.test")
    text = message("mailer-daemon@fail.auth.test")

    def bounce() -> tuple[int, bytes]:
        with live.client() as client:
            client.ehlo("mx.fail.auth.test")  # no SPF for it: none
            client.mail("<>")
            assert client.rcpt(bounce_to)[0] == 250
            return client.data(text)

    reply = await in_thread(bounce)
    assert reply[0] == 250, reply
    [stored] = await stored_messages(sessionmaker)
    assert stored.content.endswith(text) and AR_PREFIX in stored.content
