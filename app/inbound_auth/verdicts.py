"""What each check found, in RFC 8601's words: one small value per method.

Result names are those of the registries RFC 8601 2.7 points to: SPF (RFC 7208 2.6),
DKIM (RFC 6376 and RFC 8601 2.7.1), DMARC (RFC 7489 11.2) and ARC (RFC 8617 4.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PASS = "pass"
FAIL = "fail"
SOFTFAIL = "softfail"
NEUTRAL = "neutral"
NONE = "none"
POLICY = "policy"
TEMPERROR = "temperror"
PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class Spf:
    """RFC 7208: the client's address checked against the MAIL FROM domain's policy, or
    the HELO name's when the sender is <> (RFC 7208 2.4)."""

    result: str  # pass, fail, softfail, neutral, none, temperror, permerror
    domain: str  # the domain whose record was checked ("" when there was none to check)
    identity: str = "mailfrom"  # "mailfrom", or "helo" for the null sender
    explanation: str = ""


@dataclass(frozen=True, slots=True)
class DkimSignature:
    """One DKIM-Signature field of the message (RFC 6376 6) and what its check gave."""

    result: str  # pass, fail, neutral, policy, temperror, permerror
    domain: str  # d=
    selector: str  # s=
    header_b: str = ""  # the first characters of b=, to tell signatures apart (RFC 6008)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Dkim:
    """Every signature of the message, in the order they appear."""

    signatures: tuple[DkimSignature, ...] = ()

    @property
    def result(self) -> str:
        """One word for the activity log: pass when any signature passes."""
        results = [s.result for s in self.signatures]
        if not results:
            return NONE
        for word in (PASS, TEMPERROR, FAIL, PERMERROR, POLICY, NEUTRAL):
            if word in results:
                return word
        return results[0]

    def passing_domains(self) -> list[str]:
        return [s.domain.lower() for s in self.signatures if s.result == PASS]


@dataclass(frozen=True, slots=True)
class Arc:
    """RFC 8617: the chain validation status of the ARC sets the message arrived with."""

    result: str  # pass, fail, none
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Dmarc:
    """RFC 7489: the From: domain's policy applied to the SPF and DKIM results."""

    result: str  # pass, fail, none, temperror, permerror
    from_domain: str | None = None
    policy: str | None = None  # p=, or sp= for a subdomain: none, quarantine, reject
    # What the policy asks for this message, after pct= sampling (RFC 7489 6.6.4).
    disposition: str = NONE
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Spam:
    """A content filter's (rspamd's) verdict: its action and score."""

    action: str  # reject, soft reject, greylist, add header, rewrite subject, no action
    score: float
    required: float | None = None


@dataclass(frozen=True, slots=True)
class Verdicts:
    spf: Spf
    dkim: Dkim = field(default_factory=Dkim)
    dmarc: Dmarc = field(default_factory=lambda: Dmarc(NONE))
    arc: Arc = field(default_factory=lambda: Arc(NONE))
    spam: Spam | None = None  # None: no content filter, or it could not be asked
