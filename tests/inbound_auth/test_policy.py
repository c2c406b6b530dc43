"""The policy (app.inbound_auth.policy): which verdicts refuse, defer or pass a message."""

from __future__ import annotations

import pytest

from app.inbound_auth.policy import Reason, authenticated, judge
from app.inbound_auth.verdicts import Dkim, DkimSignature, Dmarc, Spam, Spf, Verdicts


def verdicts(spf: str = "none", dkim: tuple[str, ...] = (), dmarc: Dmarc | None = None) -> Verdicts:
    signatures = tuple(DkimSignature(result, "example.com", "sel") for result in dkim)
    return Verdicts(
        Spf(spf, "example.com"), Dkim(signatures), dmarc or Dmarc("none", "example.com")
    )


def enforced(v: Verdicts, spam: Spam | None = None, **options: bool) -> Reason | None:
    return judge(v, spam, enforce_authentication=True, enforce_spam=True, **options).reason


@pytest.mark.parametrize(
    ("spf", "dkim", "reason"),
    [
        ("pass", (), None),
        ("fail", ("pass",), None),
        ("softfail", ("fail", "pass"), None),
        ("fail", (), Reason.UNAUTHENTICATED),
        ("none", ("fail",), Reason.UNAUTHENTICATED),
        ("neutral", ("permerror",), Reason.UNAUTHENTICATED),
        ("temperror", (), Reason.SPF_TEMPERROR),
        ("fail", ("temperror",), Reason.AUTH_TEMPERROR),
    ],
)
def test_judge_needs_spf_pass_or_a_valid_dkim_signature(
    spf: str, dkim: tuple[str, ...], reason: Reason | None
) -> None:
    assert enforced(verdicts(spf, dkim)) is reason


def test_judge_dmarc_reject_refuses_even_with_unaligned_passes() -> None:
    failing = Dmarc("fail", "example.com", "reject", "reject")
    assert enforced(verdicts("pass", ("pass",), failing)) is Reason.DMARC_REJECT


def test_judge_dmarc_quarantine_is_forwarded() -> None:
    quarantined = Dmarc("fail", "example.com", "quarantine", "quarantine")
    assert enforced(verdicts("pass", (), quarantined)) is None


def test_judge_dmarc_temperror_defers_only_the_unauthenticated() -> None:
    unknown = Dmarc("temperror", "example.com")
    assert enforced(verdicts("fail", (), unknown)) is Reason.AUTH_TEMPERROR
    assert enforced(verdicts("pass", (), unknown)) is None
    assert enforced(verdicts("temperror", (), unknown)) is Reason.SPF_TEMPERROR


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("reject", Reason.SPAM),
        ("soft reject", Reason.SPAM_DEFERRED),
        ("greylist", Reason.SPAM_DEFERRED),
        ("add header", None),
        ("rewrite subject", None),
        ("no action", None),
    ],
)
def test_judge_spam_actions(action: str, reason: Reason | None) -> None:
    assert enforced(verdicts("pass"), Spam(action, 5.0)) is reason


def test_judge_spam_filter_down_defers_only_with_tempfail() -> None:
    v = verdicts("pass")
    assert enforced(v, spam_filter_failed=True) is None
    assert (
        enforced(v, spam_filter_failed=True, tempfail_spam=True) is Reason.SPAM_FILTER_UNAVAILABLE
    )


def test_judge_record_mode_refuses_nothing() -> None:
    bad = verdicts("fail", (), Dmarc("fail", "example.com", "reject", "reject"))
    judgement = judge(bad, Spam("reject", 99.0), enforce_authentication=False, enforce_spam=False)
    assert judgement.accepted


def test_judge_off_still_lets_the_spam_filter_act() -> None:
    judgement = judge(None, Spam("reject", 99.0), enforce_authentication=False, enforce_spam=True)
    assert judgement.reason is Reason.SPAM and judgement.permanent


def test_authenticated_by_spf_of_the_sender_domain() -> None:
    assert authenticated(verdicts("pass"), "alice@example.com")
    assert not authenticated(verdicts("fail"), "alice@example.com")


def test_authenticated_by_aligned_dkim_only() -> None:
    assert authenticated(verdicts("fail", ("pass",)), "bounces@mail.example.com")
    assert not authenticated(verdicts("fail", ("pass",)), "alice@elsewhere.test")


def test_authenticated_never_for_the_null_sender_or_helo_spf() -> None:
    helo_pass = Verdicts(Spf("pass", "mx.example.com", identity="helo"))
    assert not authenticated(helo_pass, "")
    assert not authenticated(helo_pass, "alice@example.com")
