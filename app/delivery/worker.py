"""The delivery worker: claim due deliveries, send them, record each outcome.

One worker step is one unit of work at each end: the claim is committed before any
network I/O, and the outcomes are committed together afterwards. Deliveries to the same
domain share one connection, which is kept a moment for the next step (connections.py).
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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import Delivery
from app.db.transactions import SessionTransactions, Transactions
from app.db.types import utcnow
from app.delivery.connections import ConnectionCache
from app.delivery.inline import InlineResult
from app.delivery.ledger import Ledger, retry_delay
from app.delivery.mx import NoRoute, Target, resolve_targets
from app.delivery.outcome import Outcome, Result
from app.delivery.relay import ConnectFailed, RelayConfig, connect
from app.errors import SigningError
from app.resolver import Resolver
from app.routing.networks import GLOBAL_ONLY, DeliveryNetworks
from app.services import queue

log = logging.getLogger(__name__)

PARALLEL_DOMAINS = 20
__all__ = ["DeliveryWorker", "InlineResult", "WorkerConfig", "retry_delay"]


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    hostname: str
    delivery_port: int = 25
    relay: RelayConfig | None = None
    smarthost: Target | None = None  # replaces MX look-ups when set
    # Where MX delivery may connect (the smarthost is exempt): by default only to global
    # unicast addresses, never to our own listener (app.routing.networks).
    networks: DeliveryNetworks = GLOBAL_ONLY
    batch_size: int = 100
    # The message content one claim loads at most: a batch of large messages would
    # otherwise be held all at once (a hundred 25 MiB messages, 2.5 GB). A batch has one
    # message at least, whatever its size.
    batch_octets: int = 32 * 1024 * 1024
    lease: timedelta = timedelta(minutes=10)
    poll_interval: float = 5.0
    # Seconds a connection that ended a step waits for the next (connections.py); 0:
    # closed at once.
    connection_idle: float = 0.0
    # Seconds to wait, once woken for new mail, for more to make a batch.
    linger: float = 0.0


class Signing(Protocol):
    """Our signatures on a forwarded copy (app.runtime.signing composes the real one)."""

    async def fields(self, content: bytes, *, checked: bool) -> bytes:
        """The header fields to prepend to ``content``: our DKIM signature and ARC set
        (the seal only when ``checked``: the inbound checks wrote our Authentication-
        Results). Raises SigningError: the message then goes unsigned, the log says why."""


class DeliveryWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        resolver: Resolver,
        config: WorkerConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        transactions: Transactions | None = None,
        signing: Signing | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.signing = signing
        # Claims and records (on SQLite, each in one go in the database's thread).
        self.transactions = transactions or SessionTransactions(sessionmaker)
        self.resolver = resolver
        self.config = config
        self.relay = config.relay or RelayConfig(local_hostname=config.hostname)
        self.clock = clock
        self.ledger = Ledger(sessionmaker, config.hostname, clock, jitter, self.transactions)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.connections = ConnectionCache(config.connection_idle)
        self._wake = asyncio.Event()
        self._background: set[asyncio.Future[Any]] = set()

    def wake(self) -> None:
        """New mail is queued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker %s started", self.id)
        try:
            while not stop.is_set():
                try:
                    full = (await self._step()).full
                except Exception:
                    log.exception("delivery step failed; retrying shortly")
                    full = False
                # A full batch: more may be due. Otherwise wait to be woken (mail queued
                # meanwhile has set the event already) rather than ask again at once.
                if not full:
                    await self._sleep(stop)
        finally:
            await self.connections.close_all()

    async def _sleep(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(
            waiters, timeout=self.config.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in waiters:
            waiter.cancel()
        if self._wake.is_set() and self.config.linger > 0 and not stop.is_set():
            # Woken for new mail: let what arrives with it join the batch. A claim and a
            # record for every message of a steady trickle cost more than the sending.
            await asyncio.sleep(self.config.linger)
        self._wake.clear()

    async def run_once(self) -> int:
        """Claim one batch, deliver it, record it; the number of deliveries handled."""
        return len((await self._step()).deliveries)

    async def _step(self) -> queue.Batch:
        now = self.clock()
        batch = await self.transactions.run(
            lambda session: queue.claim_due(
                session,
                self.id,
                now,
                limit=self.config.batch_size,
                lease=self.config.lease,
                max_octets=self.config.batch_octets,
            )
        )
        if batch.deliveries:
            await self.deliver(batch.deliveries)
        return batch

    async def attempt_inline(self, ids: Sequence[int], patience: float) -> InlineResult:
        """Try these deliveries while the SMTP client waits, for up to ``patience`` seconds
        (the attempt itself is not cut short: it finishes in the background).

        Every destination refusing for good: the refusal is returned for the client, and
        nothing bounces (no backscatter). Anything else: the client gets 250, failures
        bounce as usual, and an attempt still running finishes in the background.
        """
        now = self.clock()
        until = now + self.config.lease
        claimed = await self.transactions.run(
            lambda session: queue.claim(session, ids, self.id, now, until)
        )
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
        if failed:  # with none, record() already settled and dropped the message
            await self.ledger.settle(claimed, failed, outcomes, bounce=not refused)
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
        return outcomes, await self.ledger.record(claimed, outcomes, settle=False)

    def _settle_in_background(self, attempt: asyncio.Future[Any]) -> None:
        self._background.discard(attempt)
        if attempt.cancelled() or attempt.exception() is not None:
            log.error("in-session delivery attempt failed: %r", attempt.exception())
            return
        outcomes, failed = attempt.result()
        if failed:
            # One message per in-session attempt: its failures name every message to drop.
            task = asyncio.ensure_future(self.ledger.settle(failed, failed, outcomes, bounce=True))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def deliver(self, claimed: list[Delivery]) -> dict[int, Outcome]:
        """Send the claimed deliveries, then record and settle every outcome."""
        outcomes = await self._send(claimed)
        await self.ledger.record(claimed, outcomes)
        return outcomes

    async def _send(self, claimed: list[Delivery]) -> dict[int, Outcome]:
        prefixes, unsigned = await self._sign(claimed)
        by_domain: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in claimed:
            by_domain[delivery.recipient.rpartition("@")[2].lower()].append(delivery)
        limit = asyncio.Semaphore(PARALLEL_DOMAINS)

        async def one_domain(domain: str, items: list[Delivery]) -> dict[int, Outcome]:
            async with limit:
                return await self._deliver_domain(domain, items, prefixes)

        outcomes: dict[int, Outcome] = {}
        for result in await asyncio.gather(*(one_domain(d, i) for d, i in by_domain.items())):
            outcomes.update(result)
        for delivery in claimed:  # the activity log says what went unsigned, and why
            why = unsigned.get(delivery.message_id)
            if why is not None:
                outcome = outcomes[delivery.id]
                outcomes[delivery.id] = replace(outcome, reply=f"{outcome.reply} ({why})")
        return outcomes

    async def _sign(self, claimed: list[Delivery]) -> tuple[dict[int, bytes], dict[int, str]]:
        """Our fields for each message of the batch, made once however many destinations
        it has; and, for those that could not be signed, why. Our own DSNs and
        verification mail get our DKIM signature too; only forwarded mail is sealed."""
        prefixes: dict[int, bytes] = {}
        unsigned: dict[int, str] = {}
        if self.signing is None:
            return prefixes, unsigned
        for delivery in claimed:
            message = delivery.message
            if message.id in prefixes or message.id in unsigned:
                continue
            # Stored without the checks, an Authentication-Results under our name would
            # be the sender's: nothing to seal.
            checked = message.kind == "inbound" and message.spf is not None
            try:
                prefixes[message.id] = await self.signing.fields(message.content, checked=checked)
            except SigningError as exc:
                log.error("message %s sent unsigned: %s", message.queue_id, exc)
                unsigned[message.id] = f"sent unsigned: {exc}"
        return prefixes, unsigned

    async def _deliver_domain(
        self, domain: str, items: list[Delivery], prefixes: dict[int, bytes]
    ) -> dict[int, Outcome]:
        try:
            targets = (
                [self.config.smarthost]
                if self.config.smarthost
                else await resolve_targets(
                    self.resolver,
                    domain,
                    self.config.delivery_port,
                    networks=self.config.networks,
                )
            )
        except NoRoute as exc:
            return {d.id: exc.outcome for d in items}
        failure = Outcome(Result.TEMPORARY, f"no mail host of {domain} answered")
        for target in targets:
            connection = await self.connections.take(target)
            if connection is None:
                try:
                    connection = await connect(target, self.relay)
                except ConnectFailed as exc:
                    failure = exc.outcome
                    continue
                self.connections.opened(connection)
            results: dict[int, Outcome] = {}
            try:
                for delivery in items:
                    results[delivery.id] = await connection.send(
                        delivery.mail_from,
                        delivery.recipient,
                        delivery.message.content,
                        prefixes.get(delivery.message_id, b""),
                    )
            finally:
                # Parked for the next batch only after a batch that went through whole.
                if len(results) == len(items):
                    self.connections.give(connection)
                else:
                    await connection.close()
            return results
        return {d.id: failure for d in items}
