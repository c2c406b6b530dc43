"""What each delivery attempt means for the queue, the activity log and the sender.

Delivered: done. A temporary failure: retried later, with backoff, until the queue
lifetime runs out. A permanent failure (or the lifetime gone): failed, logged, and the
original sender told with a DSN, unless the sender was refused in session instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db.engine import session_scope
from app.db.models import Activity, Delivery
from app.db.transactions import SessionTransactions, Transactions
from app.delivery import dsn
from app.delivery.outcome import Outcome
from app.services import activity, outbox, queue

log = logging.getLogger(__name__)

FIRST_RETRY = 60.0  # seconds; doubles each attempt
MAX_RETRY = 3600.0


def retry_delay(attempts: int, jitter: float) -> float:
    """Exponential backoff from about a minute, capped at an hour, with +-20% jitter so
    that deliveries deferred together do not come back together."""
    base: float = min(MAX_RETRY, FIRST_RETRY * 2.0 ** max(0, attempts - 1))
    return base * (0.8 + 0.4 * jitter)


class Ledger:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        hostname: str,
        clock: Callable[[], datetime],
        jitter: Callable[[], float],
        transactions: Transactions | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.transactions = transactions or SessionTransactions(sessionmaker)
        self.hostname = hostname
        self.clock = clock
        self.jitter = jitter

    async def record(
        self, claimed: list[Delivery], outcomes: dict[int, Outcome], *, settle: bool = True
    ) -> list[Delivery]:
        """Record each outcome; the permanent failures are returned and, unless ``settle``
        is False (the in-session attempt decides later), bounced at once. A batch is a
        few statements, whatever its size: core UPDATE and INSERT over the rows."""
        now = self.clock()
        failed: list[Delivery] = []
        logs: list[dict[str, Any]] = []
        for delivery in claimed:
            if not self._record_one(delivery, outcomes[delivery.id], now, logs):
                failed.append(delivery)
        finished = {d.message_id for d in claimed}

        def write(session: Session) -> None:
            queue.save_outcomes(session, claimed)
            activity.record_many(session, logs)

        def write_and_drop(session: Session) -> None:
            write(session)
            queue.drop_finished_messages(session, finished)

        if not failed:  # the usual batch: one transaction, in one go on SQLite
            await self.transactions.run(write_and_drop)
            return failed
        async with session_scope(self.sessionmaker) as session:
            await session.run_sync(write)
            if settle:
                await self._settle_failures(session, failed, outcomes, bounce=True, now=now)
                await session.run_sync(lambda sync: queue.drop_finished_messages(sync, finished))
        return failed

    def _record_one(
        self, delivery: Delivery, outcome: Outcome, now: datetime, logs: list[dict[str, Any]]
    ) -> bool:
        """Delivered or deferred: recorded (and its log row added to ``logs``), True.
        Failed for good: marked, False."""
        if outcome.delivered:
            queue.finish(
                delivery, queue.DELIVERED, remote=outcome.remote, reply=outcome.reply, now=now
            )
            logs.append(self._row(delivery, outcome, activity.FORWARDED, now))
            return True
        if not outcome.permanent and now < delivery.expires_at:
            # The last retry falls on the expiry itself, not an hour before it.
            delay = timedelta(seconds=retry_delay(delivery.attempts + 1, self.jitter()))
            retry_at = min(now + delay, delivery.expires_at)
            queue.defer(
                delivery, remote=outcome.remote, reply=outcome.reply, retry_at=retry_at, now=now
            )
            logs.append(self._row(delivery, outcome, activity.DEFERRED, now))
            return True
        queue.finish(delivery, queue.FAILED, remote=outcome.remote, reply=outcome.reply, now=now)
        return False

    async def _settle_failures(
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
        session.add(Activity(**Ledger._row(delivery, outcome, status, now)))

    @staticmethod
    def _row(delivery: Delivery, outcome: Outcome, status: str, now: datetime) -> dict[str, Any]:
        message = delivery.message
        return activity.row(
            activity.Envelope(
                message.client_ip,
                message.mail_from,
                message.message_id,
                message.size,
                message.id,
                {name: getattr(message, name) for name in activity.VERDICT_COLUMNS},
            ),
            status=status,
            address=delivery.original_rcpt,
            rule=delivery.rule,
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
        if message.sender_authenticated is False:
            # Neither SPF nor DKIM proved the sender: it is likely forged, and a DSN would
            # land on an innocent third party (backscatter). The failure is in the log.
            log.info("message %s: no DSN to an unauthenticated sender", message.queue_id)
            return
        # A temporary failure only bounces when the queue lifetime ran out (RFC 3463 4.4.7).
        status = (outcome.status or "5.0.0") if outcome.permanent else "4.4.7"
        content, message_id = dsn.build(
            hostname=self.hostname,
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

    async def settle(
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
            await self._settle_failures(session, failed, outcomes, bounce=bounce, now=self.clock())
            finished = {d.message_id for d in claimed}
            await session.run_sync(lambda sync: queue.drop_finished_messages(sync, finished))
