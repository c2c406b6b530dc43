"""The reply to a message the inbound checks refuse or defer (app.inbound_auth.policy)."""

from __future__ import annotations

from app.inbound_auth.checker import Checked
from app.inbound_auth.policy import Reason
from app.smtp import replies

_FIXED = {
    Reason.AUTH_TEMPERROR: replies.S451_AUTH_TEMPERROR,
    Reason.SPAM: replies.S550_SPAM,
    Reason.SPAM_DEFERRED: replies.S451_SPAM_DEFERRED,
    Reason.SPAM_FILTER_UNAVAILABLE: replies.S451_SPAM_FILTER_UNAVAILABLE,
}


def judgement_reply(checked: Checked) -> str:
    reason = checked.judgement.reason
    if reason in _FIXED:
        return _FIXED[reason]
    verdicts = checked.verdicts
    assert verdicts is not None and reason is not None  # authentication reasons
    if reason is Reason.DMARC_REJECT:
        return replies.S550_DMARC_REJECT.format(domain=_printable(verdicts.dmarc.from_domain))
    if reason is Reason.SPF_TEMPERROR:
        return replies.S451_SPF_TEMPERROR.format(domain=_printable(verdicts.spf.domain))
    return replies.S550_UNAUTHENTICATED.format(spf=verdicts.spf.result, dkim=verdicts.dkim.result)


def _printable(domain: str | None) -> str:
    """A domain from the message or the session, safe in a reply: printable ASCII only
    (it comes from a From: field the sender wrote), and short."""
    text = "".join(c if " " < c < "\x7f" else "?" for c in (domain or "?"))
    return text[:100]
