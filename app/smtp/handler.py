"""The aiosmtpd handler: RCPT decided by the routing core, DATA stored durably before 250.

Mailman's rule applies: the unit of work is committed at the edge. handle_DATA commits
(SQLite with synchronous=FULL, PostgreSQL's own fsync) and only then answers 250.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app import message
from app.db.errors import OUTAGE_ERRORS, STORAGE_ERRORS, is_disk_full
from app.db.group_commit import GroupCommit
from app.db.reader import Reader, SessionReader
from app.db.transactions import SessionTransactions, Transactions
from app.db.types import utcnow
from app.errors import InvalidAddress
from app.inbound_auth.checker import Checked, InboundChecks
from app.inbound_auth.checker import Envelope as CheckedEnvelope
from app.inbound_auth.verdicts import Spf
from app.routing import Decision, Refusal
from app.routing.address import forwardable_sender
from app.routing.srs import Srs
from app.services import activity, inbound, routes
from app.smtp import replies
from app.smtp.checking import SessionChecks
from app.smtp.inline import InlineDelivery, deliver_in_session
from app.smtp.limits import PenaltyBox
from app.smtp.refusals import RefusalWriter

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: the minimum a server must accept
MAX_RECEIVED = 30
# RFC 5321 4.5.3.1.3: a path, "<" and ">" included, is at most 256 octets; the stored
# sender (and its SRS form) must fit the 320-character columns.
MAX_PATH_OCTETS = 256 - 2


@dataclass(frozen=True, slots=True)
class InboundConfig:
    hostname: str
    queue_lifetime: timedelta
    inline_delivery_timeout: float = 0.0  # 0: queue only
    postmaster: str | None = None  # where <postmaster> goes (RFC 5321 4.5.1)
    refusals_per_minute: int = 10  # refused recipients logged one by one, per client


@dataclass(slots=True)
class Transaction:
    """Per MAIL transaction: the sender ("" for <>) and the recipients accepted, and why."""

    mail_from: str
    accepted: list[inbound.Accepted] = field(default_factory=list)
    queue_id: str = ""
    trace: bytes = b""  # our Received: field, once DATA began
    # The SPF check, begun with the first recipient accepted (app.inbound_auth.checker).
    spf: asyncio.Task[Spf] | None = None


class InboundHandler:
    # aiosmtpd runs inspect.getmembers() and dir() on the handler for every new session,
    # reading each attribute, to find its handle_* hooks (and auth_* methods, of which we
    # have none): only those names need be seen. Computed once per class.
    _hooks: ClassVar[tuple[str, ...]]

    def __dir__(self) -> list[str]:
        cls = type(self)
        if "_hooks" not in cls.__dict__:  # each class its own: a subclass may add hooks
            cls._hooks = tuple(n for n in super().__dir__() if n.startswith("handle_"))
        return list(cls._hooks)

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        srs: Srs,
        config: InboundConfig,
        on_queued: Callable[[], None] | None = None,
        inline: InlineDelivery | None = None,
        reader: Reader | None = None,
        transactions: Transactions | None = None,
        penalty: PenaltyBox | None = None,
        checks: InboundChecks | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        # RCPT only reads: through a reader, it need not queue behind the writer.
        self.reader = reader or SessionReader(sessionmaker)
        transactions = transactions or SessionTransactions(sessionmaker)
        self.commits = GroupCommit(transactions, self._store)
        self.refusals = RefusalWriter(transactions, per_minute=config.refusals_per_minute)
        self.connection_refusals = RefusalWriter(
            transactions, per_minute=config.refusals_per_minute, what="connections"
        )
        # Shared with the Gate, which turns boxed addresses away (app.smtp.limits).
        self.penalty = penalty
        self.srs = srs
        self.config = config
        self.on_queued = on_queued
        self.inline = inline
        self.checks = (
            SessionChecks(checks, self.refusals) if checks is not None and checks.active else None
        )

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        extensions = [r for r in responses[:-1] if not r.upper().startswith("250-AUTH")]
        return [*extensions, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # Control characters never get here: MailrouteSMTP refuses them (501 5.1.7).
        if len(address.encode("utf-8", "surrogateescape")) > MAX_PATH_OCTETS:
            return replies.S501_SENDER_TOO_LONG
        sender = "" if address == "<>" else address
        if sender:
            try:
                sender = forwardable_sender(sender)
            except InvalidAddress:
                return replies.S553_SENDER_NOT_FORWARDABLE
        # aiosmtpd keeps "<>" as the sender (its own checks need a non-empty one).
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.transaction = Transaction(sender)
        return replies.S250_SENDER_OK

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        transaction: Transaction = envelope.transaction
        if len(transaction.accepted) >= MAX_RECIPIENTS:
            return replies.S452_TOO_MANY_RECIPIENTS
        peer = _peer_ip(session)
        try:
            _parsed, decision = await routes.route(
                self.reader,
                address,
                srs=self.srs,
                sender=transaction.mail_from,
                postmaster=self.config.postmaster,
            )
        except InvalidAddress:
            return replies.S501_BAD_ADDRESS
        except OUTAGE_ERRORS as exc:
            log.warning(
                "RCPT from %s deferred: database unavailable (%s)", peer, type(exc).__name__
            )
            return replies.S451_TEMPORARY_FAILURE
        if not decision.accepted:
            return self._refuse(address, decision, peer, transaction.mail_from)
        transaction.accepted.append(inbound.Accepted(address, decision))
        if self.checks is not None and transaction.spf is None:
            # Only now: a session whose every recipient is refused costs no DNS query.
            transaction.spf = self.checks.start(peer, session.host_name, transaction.mail_from)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.S250_RECIPIENT_OK

    def _refuse(self, address: str, decision: Decision, peer: str | None, sender: str) -> str:
        """Log a refused recipient (a forged SRS address counts against the client), and
        the reply that refuses it."""
        log.info("RCPT %s from %s refused: %s", address, peer, decision.refusal)
        if decision.refusal is Refusal.BAD_SRS and self.penalty is not None and peer:
            # Each forged bounce address is a guess at our SRS hash (app.smtp.limits).
            if self.penalty.strike(peer):
                log.warning("%s: in the penalty box (forged SRS addresses)", peer)
        self.refusals.refused(
            activity.row(
                activity.Envelope(peer, sender),
                status=activity.BLOCKED
                if decision.refusal is Refusal.BLOCKED_SENDER
                else activity.REJECTED,
                address=address,
                reply=decision.explanation,
            )
        )
        return replies.refusing(address, decision)

    def begin_data(self, session: Any, envelope: Any) -> bytes:
        """Our trace field (RFC 5321 4.4), made when DATA begins, as Postfix's smtpd does:
        the protocol (app.smtp.protocol) starts the message's buffer with it, so the text
        is never copied to put it in front."""
        transaction: Transaction = envelope.transaction
        recipients = transaction.accepted
        transaction.queue_id = secrets.token_hex(6)
        transaction.trace = message.received_header(
            helo=session.host_name,
            client_ip=_peer_ip(session),
            hostname=self.config.hostname,
            protocol=_protocol(session, envelope),
            queue_id=transaction.queue_id,
            recipient=recipients[0].address if len(recipients) == 1 else None,
            now=utcnow(),
        )
        return transaction.trace

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Store the message, then answer. The protocol has already refused text with a
        bare CR or LF, an over-long line or too many octets (app.smtp.data)."""
        transaction: Transaction = envelope.transaction
        content: bytes | bytearray = envelope.original_content
        if not transaction.trace:  # a protocol that did not call begin_data
            content = self.begin_data(session, envelope) + content
        # Our own Received: field is the first; the hops before ours are counted.
        if message.count_received(content) - 1 > MAX_RECEIVED:
            log.info("message from %s refused: a loop", _peer_ip(session))
            return replies.S554_LOOP
        queue_id = transaction.queue_id
        checked = None
        if self.checks is not None:
            envelope = CheckedEnvelope(
                _peer_ip(session),
                session.host_name,
                transaction.mail_from,
                [a.address for a in transaction.accepted],
                queue_id,
            )
            accepted = transaction.accepted
            checked = await self.checks.check(content, envelope, accepted, transaction.spf)
            if not checked.judgement.accepted:
                return self.checks.refuse(content, envelope, accepted, checked)
            content = bytearray(content) if isinstance(content, bytes) else content
            # Below our Received: field, above the sender's first byte (RFC 8601 5).
            content[len(transaction.trace) : len(transaction.trace)] = checked.fields
        arrival = _arrival(session, transaction, content, checked)
        try:
            stored = await self.commits.run(inbound.Incoming(arrival, transaction.accepted))
        except STORAGE_ERRORS as exc:
            log.error("message %s not stored: %s", queue_id, type(exc).__name__)
            return replies.S452_STORAGE if is_disk_full(exc) else replies.S451_TEMPORARY_FAILURE
        log.info(
            "message %s from %s stored: %d deliveries, %d dropped, %d refused",
            queue_id,
            _peer_ip(session),
            len(stored.delivery_ids),
            stored.dropped,
            stored.refused,
        )
        return await self._stored_reply(queue_id, stored)

    async def _stored_reply(self, queue_id: str, stored: inbound.Stored) -> str:
        """The reply to a message once stored (committed): refused, dropped, delivered in
        session, or queued."""
        if stored.refused_by_all:
            return replies.S550_NO_RECIPIENT_LEFT
        if stored.message_id is None:
            return replies.S250_DROPPED
        patience = self.config.inline_delivery_timeout
        if self.inline is not None and patience > 0:
            reply = await deliver_in_session(self.inline, queue_id, stored.delivery_ids, patience)
            if reply is not None:
                return reply
        if self.on_queued is not None:
            self.on_queued()
        return replies.S250_QUEUED.format(queue_id=queue_id)

    def _store(self, session: Session, incoming: list[inbound.Incoming]) -> list[inbound.Stored]:
        return inbound.store(
            session,
            incoming,
            srs=self.srs,
            queue_lifetime=self.config.queue_lifetime,
            now=utcnow(),
        )

    async def drain(self) -> None:
        """Wait until the refusals logged so far are written (the server is stopping)."""
        await self.refusals.drain()
        await self.connection_refusals.drain()

    def connection_refused(self, ip: str, reply: str) -> None:
        """Log a client refused at connect (a DNS blocklist lists it)."""
        self.connection_refusals.refused(
            activity.row(
                activity.Envelope(ip, None), status=activity.REJECTED, address=None, reply=reply
            )
        )

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would otherwise answer "500 Error: (ExceptionName) text": a 5xx that
        # tells the client to give up, for what is our fault and may pass.
        log.exception("SMTP session error", exc_info=error)
        return replies.S451_TEMPORARY_FAILURE


def _peer_ip(session: Any) -> str | None:
    peer = getattr(session, "peer", None)
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def _arrival(
    session: Any, transaction: Transaction, content: bytes | bytearray, checked: Checked | None
) -> inbound.Arrival:
    return inbound.Arrival(
        queue_id=transaction.queue_id,
        client_ip=_peer_ip(session),
        helo=message.safe_helo(session.host_name),
        mail_from=transaction.mail_from,
        content=content,
        message_id=message.message_id(content),
        verdicts=checked.columns() if checked is not None else {},
        authenticated=checked.authenticated if checked is not None else None,
    )


def _protocol(session: Any, envelope: Any) -> str:
    """The "with" keyword of RFC 3848 and RFC 6531."""
    if envelope.smtp_utf8:
        base = "UTF8SMTP"
    else:
        base = "ESMTP" if session.extended_smtp else "SMTP"
    return base + ("S" if session.ssl is not None else "")
