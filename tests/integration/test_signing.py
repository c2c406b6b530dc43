"""Our DKIM signature and ARC seal, end to end: mailroute checks a signed message on the
way in, forwards it to a real Postfix, and the delivered file is verified by two
implementations other than the signer's use of dkimpy's signing: dkimpy's verifiers, and a
real rspamd (its dkim and arc modules), with every key served by dnsmasq."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import partial

import dkim
import pytest

from app.inbound_auth.policy import Mode
from tests.conftest import HOSTNAME
from tests.integration.conftest import (
    DKIM_DOMAIN,
    DKIM_SELECTOR,
    SIGNING_SELECTOR,
    MailrouteFactory,
    message,
    stored,
    wait_for,
)
from tests.integration.test_forwarding import txt_from
from tests.peers import rspamd
from tests.peers.dkim_keys import Key
from tests.peers.dnsmasq import Dnsmasq
from tests.peers.postfix import Postfix

pytestmark = [pytest.mark.postfix, pytest.mark.dnsmasq]


@pytest.fixture
def rspamd_url(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config, dnsmasq: Dnsmasq
) -> Iterator[str]:
    """A real rspamd that looks keys up at this test's dnsmasq."""
    with rspamd.running_rspamd(tmp_path_factory, pytestconfig, (dnsmasq.host, dnsmasq.port)) as url:
        yield url


async def test_forwarded_copy_is_sealed_and_signed_and_verifies_elsewhere(
    start_mailroute: MailrouteFactory,
    postfix: Postfix,
    dnsmasq: Dnsmasq,
    dkim_key: Key,
    rspamd_url: str,
) -> None:
    mailroute = await start_mailroute(checks=Mode.ENFORCE, signing=True)
    destination = postfix.mailbox("sealed")
    alias = await mailroute.forward("sealed@example.org", destination)
    sender = f"alice@{DKIM_DOMAIN}"
    unsigned = message(sender, alias, "Sealed", "Sealed body.\n")
    sent = (
        dkim.sign(unsigned, DKIM_SELECTOR.encode(), DKIM_DOMAIN.encode(), dkim_key.private)
        + unsigned
    )

    await mailroute.send(sender, [alias], sent)
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))  # the sender's bytes end it, untouched
    lookup = txt_from(dnsmasq)
    # dkimpy: our signature (the topmost DKIM-Signature), the sender's, and the chain.
    verifier = dkim.DKIM(delivered)
    assert await asyncio.to_thread(verifier.verify, 0, lookup)
    assert verifier.domain == HOSTNAME.encode()
    assert await asyncio.to_thread(verifier.verify, 1, lookup)
    assert verifier.domain == DKIM_DOMAIN.encode()
    cv, _results, reason = await asyncio.to_thread(dkim.arc_verify, delivered, None, lookup)
    assert cv == dkim.CV_Pass, reason
    # rspamd: both DKIM signatures allowed, and our seal.
    symbols = await asyncio.to_thread(
        partial(rspamd.symbols, sender=f"alice@{DKIM_DOMAIN}", rcpt="x@example.org"),
        rspamd_url,
        delivered,
    )
    assert set(symbols["R_DKIM_ALLOW"]["options"]) == {  # type: ignore[arg-type]
        f"{HOSTNAME}:s={SIGNING_SELECTOR}",
        f"{DKIM_DOMAIN}:s={DKIM_SELECTOR}",
    }
    assert symbols["ARC_ALLOW"]["options"] == [f"{HOSTNAME}:s={SIGNING_SELECTOR}:i=1"]


async def test_forwarded_copy_without_checks_is_signed_not_sealed(
    start_mailroute: MailrouteFactory, postfix: Postfix, dnsmasq: Dnsmasq
) -> None:
    mailroute = await start_mailroute(signing=True)
    destination = postfix.mailbox("unsealed")
    alias = await mailroute.forward("unsealed@example.org", destination)
    sent = message("bob@elsewhere.example", alias, "Unchecked")

    await mailroute.send("bob@elsewhere.example", [alias], sent)
    await mailroute.deliver()

    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))
    assert b"\nARC-Seal:" not in delivered
    assert await asyncio.to_thread(dkim.verify, delivered, None, txt_from(dnsmasq))
