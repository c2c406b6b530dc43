"""check_spf against SPF records that dnsmasq publishes, and against a DNS server that
never answers."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.inbound_auth.lookups import Lookups
from app.inbound_auth.reasons import MAX_REASON
from app.inbound_auth.spf import LIFETIMES_PER_CHECK, check_spf
from app.inbound_auth.verdicts import Spf
from tests.inbound_auth.conftest import SILENT_LIFETIME

pytestmark = pytest.mark.dnsmasq


async def spf_of(lookups: Lookups, mail_from: str, client_ip: str = "127.0.0.1") -> Spf:
    return await check_spf(lookups, client_ip=client_ip, helo="client.example", mail_from=mail_from)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("pass.auth.test", "pass"),
        ("fail.auth.test", "fail"),
        ("softfail.auth.test", "softfail"),
        ("neutral.auth.test", "neutral"),
        ("none.auth.test", "none"),  # a TXT record, but no SPF one
        ("nowhere.auth.test", "none"),  # NXDOMAIN
        ("twice.auth.test", "permerror"),  # RFC 7208 4.5: two records
        ("syntax.auth.test", "permerror"),  # RFC 7208 4.6: an ip4 that is no address
    ],
)
async def test_check_spf_result(lookups: Lookups, domain: str, expected: str) -> None:
    verdict = await spf_of(lookups, f"alice@{domain}")
    assert (verdict.result, verdict.domain, verdict.identity) == (expected, domain, "mailfrom")


async def test_check_spf_follows_include_to_mx(lookups: Lookups) -> None:
    """include:, then a: and mx: there: A and MX answers through our DNS function."""
    passing = await spf_of(lookups, "alice@include.auth.test", client_ip="127.0.0.2")
    failing = await spf_of(lookups, "alice@include.auth.test", client_ip="127.0.0.1")
    assert (passing.result, failing.result) == ("pass", "fail")


async def test_check_spf_mx_mechanism(lookups: Lookups) -> None:
    assert (await spf_of(lookups, "bob@mx.auth.test", client_ip="127.0.0.2")).result == "pass"


async def test_check_spf_null_sender_checks_helo(lookups: Lookups) -> None:
    """RFC 7208 2.4: for MAIL FROM:<>, the identity is postmaster@<HELO name>."""
    verdict = await check_spf(lookups, client_ip="127.0.0.1", helo="helo.auth.test", mail_from="")
    assert verdict == Spf("pass", "helo.auth.test", "helo", verdict.explanation)
    other = await check_spf(lookups, client_ip="127.0.0.9", helo="HELO.auth.test.", mail_from="")
    assert (other.result, other.domain, other.identity) == ("fail", "helo.auth.test", "helo")


@pytest.mark.parametrize("helo", [None, "", "[127.0.0.1]", "127.0.0.1", "localhost"])
async def test_check_spf_null_sender_without_usable_helo_is_none(
    lookups: Lookups, helo: str | None
) -> None:
    verdict = await check_spf(lookups, client_ip="127.0.0.1", helo=helo, mail_from="")
    assert verdict == Spf("none", "", "helo")


async def test_check_spf_fail_explanation_is_bounded(lookups: Lookups) -> None:
    """RFC 7208 6.2: exp= text comes from the sender's DNS; it is cut to one short line."""
    verdict = await spf_of(lookups, "alice@explained.auth.test")
    assert verdict.result == "fail"
    assert "127.0.0.1 does not send for explained.auth.test." in verdict.explanation
    assert len(verdict.explanation) == MAX_REASON
    assert verdict.explanation.endswith("...")


async def test_check_spf_servfail_is_temperror(lookups: Lookups) -> None:
    """RFC 7208 5: a DNS error other than "no such name" is temperror, never permerror."""
    verdict = await check_spf(
        lookups, client_ip="127.0.0.1", helo="client.example", mail_from="a@example.org"
    )
    assert verdict.result == "temperror"


async def test_check_spf_dns_timeout_is_temperror(silent_lookups: Lookups) -> None:
    started = time.monotonic()
    verdict = await spf_of(silent_lookups, "alice@pass.auth.test")
    assert (verdict.result, verdict.domain) == ("temperror", "pass.auth.test")
    assert time.monotonic() - started < SILENT_LIFETIME * LIFETIMES_PER_CHECK + 1


async def test_check_spf_does_not_block_the_loop(silent_lookups: Lookups) -> None:
    """While pyspf waits on DNS in a thread, the event loop keeps running."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        verdict = await spf_of(silent_lookups, "alice@pass.auth.test")
    finally:
        ticker.cancel()
    assert verdict.result == "temperror"
    assert ticks >= SILENT_LIFETIME / 0.02 / 2


async def test_check_spf_concurrent_checks_use_their_own_servers(
    lookups: Lookups, silent_lookups: Lookups
) -> None:
    """The resolver is chosen per check (a context variable), not per process."""
    answered, unanswered = await asyncio.gather(
        spf_of(lookups, "alice@pass.auth.test"), spf_of(silent_lookups, "alice@pass.auth.test")
    )
    assert (answered.result, unanswered.result) == ("pass", "temperror")
