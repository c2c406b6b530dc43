"""The SMTP side of the inbound checks (app.inbound_auth): the envelope a session hands
them, the reply to a message they refuse or defer, and its rows in the activity log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from app import message
from app.inbound_auth.checker import Checked, Envelope, InboundChecks
from app.inbound_auth.policy import Reason
from app.inbound_auth.verdicts import Spf
from app.routing import MatchKind
from app.services import activity, inbound
from app.smtp import replies
from app.smtp.refusals import RefusalWriter

log = logging.getLogger(__name__)

_FIXED_REPLIES = {
    Reason.AUTH_TEMPERROR: replies.S451_AUTH_TEMPERROR,
    Reason.SPAM: replies.S550_SPAM,
    Reason.SPAM_DEFERRED: replies.S451_SPAM_DEFERRED,
    Reason.SPAM_FILTER_UNAVAILABLE: replies.S451_SPAM_FILTER_UNAVAILABLE,
}


class SessionChecks:
    def __init__(self, checks: InboundChecks, refusals: RefusalWriter) -> None:
        self.checks = checks
        self.refusals = refusals

    def start(self, peer: str | None, helo: str | None, mail_from: str) -> asyncio.Task[Spf] | None:
        """SPF needs only the envelope: it runs while the client sends the text."""
        return self.checks.start_spf(peer, helo, mail_from)

    async def check(
        self,
        content: bytes | bytearray,
        envelope: Envelope,
        accepted: Sequence[inbound.Accepted],
        spf: asyncio.Task[Spf] | None,
    ) -> Checked:
        # A bounce to our own SRS address is vouched for by its hash (app.routing.srs).
        vouched = all(a.decision.matched_by is MatchKind.SRS for a in accepted)
        return await self.checks.check(content, envelope, spf, vouched=vouched)

    def refuse(
        self,
        content: bytes | bytearray,
        envelope: Envelope,
        accepted: Sequence[inbound.Accepted],
        checked: Checked,
    ) -> str:
        """Refuse (or defer) the message at the end of DATA: the client keeps it and tells
        its sender; we send no bounce, ever (no backscatter). One row per recipient."""
        reply = judgement_reply(checked)
        reason = checked.judgement.reason
        log.info(
            "message %s from %s refused: %s",
            envelope.queue_id,
            envelope.client_ip,
            reason.value if reason else "",
        )
        logged = activity.Envelope(
            envelope.client_ip,
            envelope.mail_from,
            message.message_id(content),
            len(content),
            verdicts=checked.columns(),
        )
        status = activity.REJECTED if checked.judgement.permanent else activity.DEFERRED
        for recipient in accepted:
            self.refusals.refused(
                activity.row(logged, status=status, address=recipient.address, reply=reply)
            )
        return reply


def judgement_reply(checked: Checked) -> str:
    reason = checked.judgement.reason
    if reason in _FIXED_REPLIES:
        return _FIXED_REPLIES[reason]
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
