"""The checks of one message, run together and bounded in time.

SPF starts as soon as a recipient is accepted (it needs only the envelope) and runs while
the client sends the text; DKIM, ARC, DMARC and the content filter start at the end of
DATA, side by side. A check that outlives its time limit is a ``temperror``; the content
filter, when it cannot be asked, is no verdict at all (``spam`` None).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from app import message
from app.inbound_auth import headers
from app.inbound_auth.dkim import check_arc, check_dkim
from app.inbound_auth.dmarc import check_dmarc
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.policy import Judgement, Mode, authenticated, judge
from app.inbound_auth.rspamd import Rspamd, SpamFilterUnavailable
from app.inbound_auth.spf import check_spf
from app.inbound_auth.verdicts import (
    NONE,
    TEMPERROR,
    Arc,
    Dkim,
    DkimSignature,
    Dmarc,
    Spam,
    Spf,
    Verdicts,
)
from app.resolver import Resolver

log = logging.getLogger(__name__)
# A DKIM check that outlived its limit: temporary, so that the sender retries.
DKIM_TIMED_OUT = Dkim((DkimSignature(TEMPERROR, "", "", reason="time limit"),))
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Envelope:
    client_ip: str | None
    helo: str | None
    mail_from: str  # "" for <>
    recipients: Sequence[str]
    queue_id: str


@dataclass(frozen=True, slots=True)
class Checked:
    """What the checks found and mean; ``fields`` go below our Received: field."""

    verdicts: Verdicts | None  # None: authentication is off (a content filter may run)
    spam: Spam | None
    judgement: Judgement
    fields: bytes
    # Whether a bounce to the sender is no backscatter (None: not checked, as before).
    authenticated: bool | None

    def columns(self) -> dict[str, str | float | None]:
        """The verdicts as the messages and activity tables keep them."""
        verdicts = self.verdicts
        return {
            "spf": verdicts.spf.result if verdicts else None,
            "dkim": verdicts.dkim.result if verdicts else None,
            "dmarc": verdicts.dmarc.result if verdicts else None,
            "arc": verdicts.arc.result if verdicts else None,
            "spam_score": self.spam.score if self.spam else None,
            "spam_action": self.spam.action if self.spam else None,
        }


class InboundChecks:
    def __init__(
        self,
        *,
        mode: Mode,
        authserv_id: str,
        resolver: Resolver,
        lookups: Lookups,
        spam_filter: Rspamd | None = None,
        tempfail_spam: bool = False,
        time_limit: float = 20.0,
    ) -> None:
        self.mode = mode
        self.authserv_id = authserv_id
        self.resolver = resolver
        self.lookups = lookups
        self.spam_filter = spam_filter
        self.tempfail_spam = tempfail_spam
        self.time_limit = time_limit

    @property
    def active(self) -> bool:
        return self.mode is not Mode.OFF or self.spam_filter is not None

    def start_spf(
        self, client_ip: str | None, helo: str | None, mail_from: str
    ) -> asyncio.Task[Spf] | None:
        """Begin the SPF check of a transaction (None when authentication is off)."""
        if self.mode is Mode.OFF:
            return None
        return self._spf(client_ip, helo, mail_from)

    def _spf(self, client_ip: str | None, helo: str | None, mail_from: str) -> asyncio.Task[Spf]:
        identity = "mailfrom" if mail_from else "helo"
        return asyncio.ensure_future(
            self._bounded(
                check_spf(self.lookups, client_ip=client_ip or "", helo=helo, mail_from=mail_from),
                Spf(TEMPERROR, "", identity, "time limit"),
            )
        )

    async def check(
        self,
        content: bytes | bytearray,
        envelope: Envelope,
        spf: asyncio.Task[Spf] | None,
        *,
        vouched: bool = False,
    ) -> Checked:
        """Every check of the message; ``vouched`` (a bounce to our own SRS address) is
        recorded but never refused: our SRS hash vouches for it, whatever its SPF."""
        spam_task = asyncio.ensure_future(self._spam(content, envelope))
        verdicts: Verdicts | None = None
        if self.mode is not Mode.OFF:
            verdicts = await self._verdicts(content, envelope, spf)
        spam, spam_failed = await spam_task
        if verdicts is not None:
            verdicts = Verdicts(verdicts.spf, verdicts.dkim, verdicts.dmarc, verdicts.arc, spam)
        judgement = judge(
            verdicts,
            spam,
            enforce_authentication=self.mode is Mode.ENFORCE and not vouched,
            enforce_spam=self.mode is not Mode.RECORD and not vouched,
            spam_filter_failed=spam_failed,
            tempfail_spam=self.tempfail_spam,
        )
        dmarc = verdicts.dmarc if verdicts is not None else None
        if dmarc is not None and dmarc.disposition == "quarantine" and judgement.accepted:
            # No quarantine of ours: forwarded, the verdict in the header for the inbox.
            log.info(
                "message %s: DMARC quarantine for %s, forwarded with the verdict",
                envelope.queue_id,
                dmarc.from_domain,
            )
        fields = b""
        if verdicts is not None:
            fields += headers.authentication_results(
                self.authserv_id, verdicts, mail_from=envelope.mail_from
            )
        if spam is not None:
            fields += headers.spam_headers(spam)
        return Checked(
            verdicts,
            spam,
            judgement,
            fields,
            None if verdicts is None else authenticated(verdicts, envelope.mail_from),
        )

    async def _verdicts(
        self, content: bytes | bytearray, envelope: Envelope, spf_task: asyncio.Task[Spf] | None
    ) -> Verdicts:
        names = set(message.field_names(content))
        signed, sealed = "dkim-signature" in names, "arc-seal" in names
        # dkimpy hashes bytes: one copy serves DKIM and ARC, and none is made for the
        # usual message with neither (a large one would double in memory).
        text = bytes(content) if signed or sealed else content
        dkim_task = arc_task = None
        if signed:
            dkim_task = asyncio.ensure_future(
                self._bounded(check_dkim(self.lookups, text), DKIM_TIMED_OUT)
            )
        if sealed:
            arc_task = asyncio.ensure_future(
                self._bounded(check_arc(self.lookups, text), Arc(TEMPERROR, "time limit"))
            )
        if spf_task is None:  # no recipient started it (a caller other than the server)
            spf_task = self._spf(envelope.client_ip, envelope.helo, envelope.mail_from)
        spf = await spf_task
        dkim = Dkim() if dkim_task is None else await dkim_task
        dmarc = await self._bounded(
            check_dmarc(self.resolver, message.author_domains(content), spf=spf, dkim=dkim),
            Dmarc(TEMPERROR, reason="time limit"),
        )
        return Verdicts(spf, dkim, dmarc, Arc(NONE) if arc_task is None else await arc_task)

    async def _spam(
        self, content: bytes | bytearray, envelope: Envelope
    ) -> tuple[Spam | None, bool]:
        """The content filter's verdict, and whether asking it failed."""
        if self.spam_filter is None:
            return None, False
        try:
            spam = await self.spam_filter.check(
                content,
                client_ip=envelope.client_ip,
                helo=envelope.helo,
                mail_from=envelope.mail_from,
                recipients=envelope.recipients,
                queue_id=envelope.queue_id,
                hostname=self.authserv_id,
            )
        except SpamFilterUnavailable as exc:
            log.warning("message %s: spam filter unavailable: %s", envelope.queue_id, exc)
            return None, True
        return spam, False

    async def _bounded(self, check: Awaitable[T], on_timeout: T) -> T:
        try:
            return await asyncio.wait_for(check, self.time_limit)
        except TimeoutError:
            return on_timeout

    async def aclose(self) -> None:
        if self.spam_filter is not None:
            await self.spam_filter.aclose()
        self.lookups.close()
