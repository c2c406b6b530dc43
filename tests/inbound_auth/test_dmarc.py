"""DMARC (RFC 7489): record parsing, alignment, pct= and sp=, discovery over real DNS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.inbound_auth import dmarc
from app.inbound_auth.verdicts import Dkim, DkimSignature, Spf
from app.resolver import DnsResolver
from tests.fakes import FakeResolver
from tests.peers.dnsmasq import Dnsmasq, Zone

SPF_PASS = Spf("pass", "bounce.example.com")
SPF_FAIL = Spf("fail", "example.com")
NO_DKIM = Dkim()


def dkim_pass(domain: str) -> Dkim:
    return Dkim((DkimSignature("pass", domain, "sel"),))


def test_parse_record_reads_the_deciding_tags() -> None:
    record = dmarc.parse_record("v=DMARC1; p=reject; sp=none; pct=20; adkim=s; aspf=r")
    assert record == dmarc.Record("reject", "none", 20, strict_dkim=True, strict_spf=False)


@pytest.mark.parametrize(
    "text",
    ["v=DMARC2; p=reject", "p=reject; v=DMARC1", "v=DMARC1; p=bounce", "v=spf1 -all", ""],
)
def test_parse_record_refuses_what_is_not_dmarc(text: str) -> None:
    assert dmarc.parse_record(text) is None


def test_parse_record_without_policy_but_with_rua_means_none() -> None:
    record = dmarc.parse_record("v=DMARC1; rua=mailto:d@example.com")
    assert record is not None and record.policy == "none"


def test_parse_record_bad_pct_is_ignored() -> None:
    record = dmarc.parse_record("v=DMARC1; p=reject; pct=lots")
    assert record is not None and record.percent == 100


def test_organizational_domain_from_the_public_suffix_list() -> None:
    assert dmarc.organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert dmarc.organizational_domain("mail.example.com.") == "example.com"


def test_aligned_relaxed_and_strict() -> None:
    assert dmarc.aligned("bounce.example.com", "example.com", strict=False)
    assert not dmarc.aligned("bounce.example.com", "example.com", strict=True)
    assert not dmarc.aligned("example.co.uk", "other.co.uk", strict=False)


def test_evaluate_relaxed_spf_alignment_passes() -> None:
    record = dmarc.Record("reject")
    result = dmarc.evaluate(
        "example.com", record, is_subdomain=False, spf=SPF_PASS, dkim=NO_DKIM, sample=0.5
    )
    assert (result.result, result.disposition) == ("pass", "none")


def test_evaluate_strict_spf_alignment_fails_for_a_subdomain() -> None:
    record = dmarc.Record("reject", strict_spf=True)
    result = dmarc.evaluate(
        "example.com", record, is_subdomain=False, spf=SPF_PASS, dkim=NO_DKIM, sample=0.5
    )
    assert (result.result, result.disposition) == ("fail", "reject")


def test_evaluate_dkim_of_another_organization_does_not_align() -> None:
    record = dmarc.Record("quarantine")
    result = dmarc.evaluate(
        "example.com",
        record,
        is_subdomain=False,
        spf=SPF_FAIL,
        dkim=dkim_pass("mailer.example.net"),
        sample=0.0,
    )
    assert (result.result, result.disposition) == ("fail", "quarantine")


def test_evaluate_pct_samples_the_policy_down() -> None:
    record = dmarc.Record("reject", percent=30)
    kept = dmarc.evaluate(
        "example.com", record, is_subdomain=False, spf=SPF_FAIL, dkim=NO_DKIM, sample=0.29
    )
    spared = dmarc.evaluate(
        "example.com", record, is_subdomain=False, spf=SPF_FAIL, dkim=NO_DKIM, sample=0.30
    )
    assert (kept.disposition, spared.disposition) == ("reject", "quarantine")


def test_evaluate_subdomain_policy_applies_to_subdomains() -> None:
    record = dmarc.Record("reject", subdomain_policy="none")
    result = dmarc.evaluate(
        "news.example.com", record, is_subdomain=True, spf=SPF_FAIL, dkim=NO_DKIM, sample=0.0
    )
    assert (result.result, result.policy, result.disposition) == ("fail", "none", "none")


# Discovery against a real DNS server.
ZONE = Zone(
    txt=[
        ("_dmarc.reject.test", "v=DMARC1; p=reject"),
        ("_dmarc.quarantine.test", "v=DMARC1; p=quarantine; pct=100"),
        ("_dmarc.org.test", "v=DMARC1; p=reject; sp=quarantine"),
        ("_dmarc.twice.test", "v=DMARC1; p=reject"),
        ("_dmarc.twice.test", "v=DMARC1; p=none"),
    ],
    local_domains=["reject.test", "quarantine.test", "org.test", "twice.test", "none.test"],
)


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsResolver]:
    server = Dnsmasq(ZONE)
    server.start()
    yield DnsResolver([(server.host, server.port)], lifetime=2.0)
    server.stop()


async def check(dns: DnsResolver, from_domain: str, spf: Spf = SPF_FAIL) -> dmarc.Dmarc:
    return await dmarc.check_dmarc(dns, [from_domain], spf=spf, dkim=NO_DKIM, sample=lambda: 0.0)


async def test_check_dmarc_reject_policy_over_dns(dns: DnsResolver) -> None:
    result = await check(dns, "reject.test")
    assert (result.result, result.policy, result.disposition) == ("fail", "reject", "reject")


async def test_check_dmarc_aligned_pass_over_dns(dns: DnsResolver) -> None:
    result = await check(dns, "reject.test", spf=Spf("pass", "reject.test"))
    assert result.result == "pass"


async def test_check_dmarc_subdomain_inherits_sp_over_dns(dns: DnsResolver) -> None:
    result = await check(dns, "news.org.test")
    assert (result.result, result.policy, result.disposition) == (
        "fail",
        "quarantine",
        "quarantine",
    )


async def test_check_dmarc_no_record_is_none(dns: DnsResolver) -> None:
    assert (await check(dns, "none.test")).result == "none"


async def test_check_dmarc_two_records_mean_no_policy(dns: DnsResolver) -> None:
    assert (await check(dns, "twice.test")).result == "none"


async def test_check_dmarc_without_a_single_author_is_not_evaluated() -> None:
    resolver = FakeResolver()
    nobody = await dmarc.check_dmarc(resolver, [], spf=SPF_FAIL, dkim=NO_DKIM)
    several = await dmarc.check_dmarc(resolver, ["a.test", "b.test"], spf=SPF_FAIL, dkim=NO_DKIM)
    assert (nobody.result, several.result) == ("none", "permerror")
    assert resolver.queries == []


async def test_check_dmarc_dns_failure_is_temperror() -> None:
    resolver = FakeResolver(failing={"_dmarc.down.test"})
    result = await dmarc.check_dmarc(resolver, ["down.test"], spf=SPF_FAIL, dkim=NO_DKIM)
    assert result.result == "temperror"
