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

    async def deliver_now(self, ids: Sequence[int]) -> dict[int, Outcome]:
        """Deliver these deliveries at once (the SMTP server's in-session attempt)."""
        now = self.clock()
        async with session_scope(self.sessionmaker) as session:
            claimed = await queue.claim(session, ids, self.id, now + self.config.lease)
        return await self.deliver(claimed) if claimed else {}

    async def deliver(self, claimed: list[Delivery]) -> dict[int, Outcome]:
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
        await self._record(claimed, outcomes)
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

    async def _record(self, claimed: list[Delivery], outcomes: dict[int, Outcome]) -> None:
        now = self.clock()
        async with session_scope(self.sessionmaker) as session:
            for delivery in claimed:
                session.add(delivery)  # detached after the claim's session closed
                await self._record_one(session, delivery, outcomes[delivery.id], now)
            await queue.drop_finished_messages(session, {d.message_id for d in claimed})

    async def _record_one(
        self, session: AsyncSession, delivery: Delivery, outcome: Outcome, now: datetime
    ) -> None:
        message = delivery.message
        envelope = activity.Envelope(
            message.client_ip, message.mail_from, message.message_id, message.size, message.id
        )

        def log_activity(status: str) -> None:
            activity.record(
                session,
                envelope,
                status=status,
                address=delivery.original_rcpt,
                action="forward",
                destination=delivery.recipient,
                remote_host=outcome.remote,
                reply=outcome.reply,
                at=now,
            )

        if outcome.delivered:
            queue.finish(
                delivery, queue.DELIVERED, remote=outcome.remote, reply=outcome.reply, now=now
            )
            log_activity(activity.FORWARDED)
            return
        retry_at = now + timedelta(seconds=retry_delay(delivery.attempts + 1, self.jitter()))
        if not outcome.permanent and retry_at < delivery.expires_at:
            queue.defer(
                delivery, remote=outcome.remote, reply=outcome.reply, retry_at=retry_at, now=now
            )
            log_activity(activity.DEFERRED)
            return
        queue.finish(delivery, queue.FAILED, remote=outcome.remote, reply=outcome.reply, now=now)
        log_activity(activity.BOUNCED)
        await self._bounce(session, delivery, outcome, now)

    async def _bounce(
        self, session: AsyncSession, delivery: Delivery, outcome: Outcome, now: datetime
    ) -> None:
        """A DSN to the original sender; never one about a DSN or a bounce (RFC 3464 2)."""
        message = delivery.message
        if message.kind != "inbound" or not message.mail_from or not delivery.mail_from:
            return
        status = outcome.status or ("5.0.0" if outcome.permanent else "4.4.7")
        if not outcome.permanent:
            status = "4.4.7"  # delivery time expired (RFC 3463)
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
        )
