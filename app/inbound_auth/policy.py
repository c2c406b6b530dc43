"""What the verdicts mean for the message: accept, refuse (5xx) or defer (4xx).

Pure: the SMTP handler asks at the end of DATA and sends the reply this returns. The rules
are Cloudflare Email Routing's and Gmail's guidance to forwarders:

- DMARC ``fail`` where the policy (after ``pct=``) is ``reject``: refused, 5.7.26.
- Neither SPF ``pass`` nor any valid DKIM signature: refused, 5.7.26 (RFC 7372); unless
  a check failed temporarily and might have passed: then deferred, so the sender retries.
- DMARC ``fail`` with ``quarantine``: forwarded, the verdict in Authentication-Results.
- A spam filter's ``reject``: refused, 5.7.1; ``soft reject`` or ``greylist``: deferred.

``record`` never refuses or defers; ``off`` checks no authentication (a content filter,
when configured, still acts).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.inbound_auth.dmarc import aligned
from app.inbound_auth.verdicts import PASS, TEMPERROR, Spam, Verdicts


class Mode(enum.StrEnum):
    ENFORCE = "enforce"
    RECORD = "record"
    OFF = "off"


class Reason(enum.Enum):
    """Why a message is refused or deferred; the SMTP handler words each as a reply."""

    DMARC_REJECT = "dmarc_reject"
    UNAUTHENTICATED = "unauthenticated"
    SPF_TEMPERROR = "spf_temperror"
    AUTH_TEMPERROR = "auth_temperror"
    SPAM = "spam"
    SPAM_DEFERRED = "spam_deferred"
    SPAM_FILTER_UNAVAILABLE = "spam_filter_unavailable"


@dataclass(frozen=True, slots=True)
class Judgement:
    reason: Reason | None = None  # None: the message is accepted

    @property
    def accepted(self) -> bool:
        return self.reason is None

    @property
    def permanent(self) -> bool:
        return self.reason in (Reason.DMARC_REJECT, Reason.UNAUTHENTICATED, Reason.SPAM)


ACCEPTED = Judgement()
REFUSING_SPAM_ACTIONS = {"reject": Reason.SPAM}
DEFERRING_SPAM_ACTIONS = {"soft reject": Reason.SPAM_DEFERRED, "greylist": Reason.SPAM_DEFERRED}


def judge(
    verdicts: Verdicts | None,
    spam: Spam | None,
    *,
    enforce_authentication: bool,
    enforce_spam: bool,
    spam_filter_failed: bool = False,
    tempfail_spam: bool = False,
) -> Judgement:
    """The fate of a message. ``verdicts`` None: authentication is off. ``spam`` None:
    no content filter, or ``spam_filter_failed`` to ask it, which defers the message with
    ``tempfail_spam`` (MAILROUTE_RSPAMD_FAILURE=tempfail)."""
    if enforce_authentication and verdicts is not None:
        reason = _authentication(verdicts)
        if reason is not None:
            return Judgement(reason)
    if not enforce_spam:
        return ACCEPTED
    if spam_filter_failed and tempfail_spam:
        return Judgement(Reason.SPAM_FILTER_UNAVAILABLE)
    if spam is not None:
        reason = REFUSING_SPAM_ACTIONS.get(spam.action) or DEFERRING_SPAM_ACTIONS.get(spam.action)
        if reason is not None:
            return Judgement(reason)
    return ACCEPTED


def _authentication(verdicts: Verdicts) -> Reason | None:
    dmarc = verdicts.dmarc
    if dmarc.result == "fail" and dmarc.disposition == "reject":
        return Reason.DMARC_REJECT
    spf_passed = verdicts.spf.result == PASS
    dkim_passed = bool(verdicts.dkim.passing_domains())
    if dmarc.result == TEMPERROR and not (spf_passed or dkim_passed):
        # The policy, unknown, may have said reject: defer, naming SPF when it failed too.
        return Reason.SPF_TEMPERROR if verdicts.spf.result == TEMPERROR else Reason.AUTH_TEMPERROR
    if spf_passed or dkim_passed:
        return None
    if verdicts.spf.result == TEMPERROR:
        return Reason.SPF_TEMPERROR
    if any(s.result == TEMPERROR for s in verdicts.dkim.signatures):
        return Reason.AUTH_TEMPERROR
    return Reason.UNAUTHENTICATED


def authenticated(verdicts: Verdicts, mail_from: str) -> bool:
    """Whether ``mail_from`` is proven, so that a bounce to it is no backscatter: SPF
    passed for its domain, or a valid DKIM signature aligns with it (relaxed)."""
    if not mail_from:
        return False
    domain = mail_from.rpartition("@")[2].lower()
    if verdicts.spf.result == PASS and verdicts.spf.identity == "mailfrom":
        return True
    return any(aligned(d, domain, strict=False) for d in verdicts.dkim.passing_domains())
