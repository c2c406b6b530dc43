"""The delivery worker: claim due deliveries, send them, record each outcome.

One worker step is one unit of work at each end: the claim is committed before any
network I/O, and the outcomes are committed together afterwards. Deliveries to the same
domain share one connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Delivery
from app.db.types import utcnow
from app.delivery import dsn
from app.delivery.mx import NoRoute, Target, resolve_targets
from app.delivery.outcome import Outcome, Result
from app.delivery.relay import ConnectFailed, RelayConfig, connect
from app.resolver import Resolver
from app.services import activity, outbox, queue

log = logging.getLogger(__name__)

FIRST_RETRY = 60.0  # seconds; doubles each attempt
MAX_RETRY = 3600.0
PARALLEL_DOMAINS = 20


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    hostname: str
    delivery_port: int = 25
    relay: RelayConfig | None = None
    smarthost: Target | None = None  # replaces MX look-ups when set
    batch_size: int = 100
    lease: timedelta = timedelta(minutes=10)
    poll_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class InlineResult:
    """What the in-session attempt means for the SMTP client's answer."""

    delivered: bool = False  # every destination took it
    refusal: Outcome | None = None  # every destination refused it for good: this reply
    refused_for: str | None = None  # the recipient the client used
    hidden_destination: str | None = None  # where it was forwarded: kept out of the reply

    def refusal_reply(self) -> str | None:
        """The refusal as an SMTP reply for the client, the destination replaced by the
        address the client used (a disposable alias must not leak its inbox)."""
        if self.refusal is None or self.refused_for is None:
            return None
        code = self.refusal.reply[:3] if self.refusal.reply[:1] == "5" else "550"
        text = dsn.hide_destination(
            self.refusal.reply[4:], self.hidden_destination or "", self.refused_for
        )
        text = text.removeprefix(self.refusal.status or "").strip()
        text = "".join(c if " " <= c <= "~" else "?" for c in text)[:400]
        status = self.refusal.status or "5.0.0"
        return f"{code} {status} <{self.refused_for}>: forwarding refused: {text}"


def retry_delay(attempts: int, jitter: float) -> float:
    """Exponential backoff from about a minute, capped at an hour, with +-20% jitter so
    that deliveries deferred together do not come back together."""
    base: float = min(MAX_RETRY, FIRST_RETRY * 2.0 ** max(0, attempts - 1))
    return base * (0.8 + 0.4 * jitter)


class DeliveryWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        resolver: Resolver,
        config: WorkerConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.resolver = resolver
        self.config = config
        self.relay = config.relay or RelayConfig(local_hostname=config.hostname)
        self.clock = clock
        self.jitter = jitter
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._background: set[asyncio.Future[Any]] = set()

    def wake(self) -> None:
        """New mail is queued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker %s started", self.id)
        while not stop.is_set():
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("delivery step failed; retrying shortly")
                handled = 0
            if handled == 0:
                await self._sleep(stop)

    async def _sleep(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(
            waiters, timeout=self.config.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in waiters:
            waiter.cancel()
        self._wake.clear()

    async def run_once(self) -> int:
        """Claim one batch, deliver it, record it; the number of deliveries handled."""
        now = self.clock()
        async with session_scope(self.sessionmaker) as session:
            claimed = await queue.claim_due(
                session, self.id, now, limit=self.config.batch_size, lease=self.config.lease
            )
        if claimed:
            await self.deliver(claimed)
        return len(claimed)

    async def attempt_inline(self, ids: Sequence[int], patience: float) -> InlineResult:
        """Try these deliveries while the SMTP client waits, for up to ``patience`` seconds
        (the attempt itself is not cut short: it finishes in the background).

        Every destination refusing for good: the refusal is returned for the client, and
        nothing bounces (no backscatter). Anything else: the client gets 250, failures
        bounce as usual, and an attempt still running finishes in the background.
        """
        now = self.clock()
        async with session_scope(self.sessionmaker) as session:
            claimed = await queue.claim(session, ids, self.id, now + self.config.lease)
        if not claimed:
            return InlineResult()
        attempt = asyncio.ensure_future(self._deliver_unsettled(claimed))
        done, _ = await asyncio.wait({attempt}, timeout=patience)
        if attempt not in done:
            self._background.add(attempt)
            attempt.add_done_callback(self._settle_in_background)
            return InlineResult()
        outcomes, failed = attempt.result()
        refused = bool(failed) and len(failed) == len(claimed)
        await self._settle_later(claimed, failed, outcomes, bounce=not refused)
        if refused:
            first = failed[0]
            return InlineResult(
                refusal=outcomes[first.id],
                refused_for=first.original_rcpt,
                hidden_destination=first.recipient,
            )
        return InlineResult(delivered=all(o.delivered for o in outcomes.values()))

    async def _deliver_unsettled(
        self, claimed: list[Delivery]
    ) -> tuple[dict[int, Outcome], list[Delivery]]:
        outcomes = await self._send(claimed)
        return outcomes, await self._record(claimed, outcomes, settle=False)

    def _settle_in_background(self, attempt: asyncio.Future[Any]) -> None:
        self._background.discard(attempt)
        if attempt.cancelled() or attempt.exception() is not None:
            log.error("in-session delivery attempt failed: %r", attempt.exception())
            return
        outcomes, failed = attempt.result()
        if failed:
            claimed = failed  # the delivered and deferred ones are already recorded
            task = asyncio.ensure_future(self._settle_later(claimed, failed, outcomes, bounce=True))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _settle_later(
        self,
        claimed: list[Delivery],
        failed: list[Delivery],
        outcomes: dict[int, Outcome],
        *,
        bounce: bool,
    ) -> None:
        async with session_scope(self.sessionmaker) as session:
            for delivery in failed:
                session.add(delivery)
            await self._settle(session, failed, outcomes, bounce=bounce, now=self.clock())
            await queue.drop_finished_messages(session, {d.message_id for d in claimed})

    async def deliver(self, claimed: list[Delivery]) -> dict[int, Outcome]:
        """Send the claimed deliveries, then record and settle every outcome."""
        outcomes = await self._send(claimed)
        await self._record(claimed, outcomes)
        return outcomes

    async def _send(self, claimed: list[Delivery]) -> dict[int, Outcome]:
        by_domain: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in claimed:
            by_domain[delivery.recipient.rpartition("@")[2].lower()].append(delivery)
        limit = asyncio.Semaphore(PARALLEL_DOMAINS)

        async def one_domain(domain: str, items: list[Delivery]) -> dict[int, Outcome]:
            async with limit:
                return await self._deliver_domain(domain, items)

        outcomes: dict[int, Outcome] = {}
        for result in await asyncio.gather(*(one_domain(d, i) for d, i in by_domain.items())):
            outcomes.update(result)
        return outcomes

    async def _deliver_domain(self, domain: str, items: list[Delivery]) -> dict[int, Outcome]:
        try:
            targets = (
                [self.config.smarthost]
                if self.config.smarthost
                else await resolve_targets(self.resolver, domain, self.config.delivery_port)
            )
        except NoRoute as exc:
            return {d.id: exc.outcome for d in items}
        failure = Outcome(Result.TEMPORARY, f"no mail host of {domain} answered")
        for target in targets:
            try:
                connection = await connect(target, self.relay)
            except ConnectFailed as exc:
                failure = exc.outcome
                continue
            try:
                results: dict[int, Outcome] = {}
                for delivery in items:
                    results[delivery.id] = await connection.send(
                        delivery.mail_from, delivery.recipient, delivery.message.content
                    )
                return results
            finally:
                await connection.close()
        return {d.id: failure for d in items}

    async def _record(
        self, claimed: list[Delivery], outcomes: dict[int, Outcome], *, settle: bool = True
    ) -> list[Delivery]:
        """Record each outcome; the permanent failures are returned and, unless ``settle``
        is False (the in-session attempt decides later), bounced at once."""
        now = self.clock()
        failed: list[Delivery] = []
        async with session_scope(self.sessionmaker) as session:
            for delivery in claimed:
                session.add(delivery)  # detached after the claim's session closed
                if not self._record_one(session, delivery, outcomes[delivery.id], now):
                    failed.append(delivery)
            if settle or not failed:
                await self._settle(session, failed, outcomes, bounce=True, now=now)
                await queue.drop_finished_messages(session, {d.message_id for d in claimed})
        return failed

    def _record_one(
        self, session: AsyncSession, delivery: Delivery, outcome: Outcome, now: datetime
    ) -> bool:
        """Delivered or deferred: recorded, True. Failed for good: marked, False."""
        if outcome.delivered:
            queue.finish(
                delivery, queue.DELIVERED, remote=outcome.remote, reply=outcome.reply, now=now
            )
            self._log(session, delivery, outcome, activity.FORWARDED, now)
            return True
        if not outcome.permanent and now < delivery.expires_at:
            # The last retry falls on the expiry itself, not an hour before it.
            delay = timedelta(seconds=retry_delay(delivery.attempts + 1, self.jitter()))
            retry_at = min(now + delay, delivery.expires_at)
            queue.defer(
                delivery, remote=outcome.remote, reply=outcome.reply, retry_at=retry_at, now=now
            )
            self._log(session, delivery, outcome, activity.DEFERRED, now)
            return True
        queue.finish(delivery, queue.FAILED, remote=outcome.remote, reply=outcome.reply, now=now)
        return False

    async def _settle(
        self,
        session: AsyncSession,
        failed: list[Delivery],
        outcomes: dict[int, Outcome],
        *,
        bounce: bool,
        now: datetime,
    ) -> None:
        """Log the permanent failures and, with ``bounce``, send their DSNs. Without
        ``bounce`` the sender was refused in session: no DSN, no backscatter."""
        for delivery in failed:
            outcome = outcomes[delivery.id]
            self._log(
                session, delivery, outcome, activity.BOUNCED if bounce else activity.REJECTED, now
            )
            if bounce:
                await self._bounce(session, delivery, outcome, now)

    @staticmethod
    def _log(
        session: AsyncSession, delivery: Delivery, outcome: Outcome, status: str, now: datetime
    ) -> None:
        message = delivery.message
        activity.record(
            session,
            activity.Envelope(
                message.client_ip, message.mail_from, message.message_id, message.size, message.id
            ),
            status=status,
            address=delivery.original_rcpt,
            action="forward",
            destination=delivery.recipient,
            remote_host=outcome.remote,
            reply=outcome.reply,
            at=now,
        )

    async def _bounce(
        self, session: AsyncSession, delivery: Delivery, outcome: Outcome, now: datetime
    ) -> None:
        """A DSN to the original sender; never one about a DSN or a bounce (RFC 3464 2)."""
        message = delivery.message
        if message.kind != "inbound" or not message.mail_from or not delivery.mail_from:
            return
        # A temporary failure only bounces when the queue lifetime ran out (RFC 3463 4.4.7).
        status = (outcome.status or "5.0.0") if outcome.permanent else "4.4.7"
        content, message_id = dsn.build(
            hostname=self.config.hostname,
            sender=message.mail_from,
            original=message.content,
            arrival=message.created_at,
            failures=[
                dsn.Failure(delivery.original_rcpt, delivery.recipient, status, outcome.reply)
            ],
            now=now,
        )
        await outbox.enqueue_raw(
            session,
            content,
            kind="dsn",
            mail_from="",
            recipients=[message.mail_from],
            message_id=message_id,
            now=now,
        )
