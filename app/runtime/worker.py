"""The ``worker`` role: a delivery worker, and the hourly maintenance beside it.

Run alone (``mailroute worker``), any number may share a PostgreSQL queue. Run as
serve's child (``wake_fd``), it is woken through serve's pipe and dies with serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from app import supervisor
from app.config import Settings
from app.db.engine import session_scope
from app.db.errors import OUTAGE_ERRORS
from app.delivery.connections import IDLE_LIMIT
from app.delivery.mx import Target
from app.delivery.relay import RelayConfig
from app.delivery.worker import DeliveryWorker, WorkerConfig
from app.routing.networks import DeliveryNetworks
from app.runtime import Runtime, together
from app.runtime.signing import live_signing
from app.services import activity, queue

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 3600.0
LINGER = 0.05  # seconds the worker waits, once woken, for more mail to batch


async def run(rt: Runtime, stop: asyncio.Event, wake_fd: int | None = None) -> None:
    """The delivery worker; ``wake_fd``: it is serve's child, woken through this pipe."""
    await together(stop, _deliver(rt, delivery_worker(rt), stop, wake_fd), _maintain(rt, stop))


async def _deliver(
    rt: Runtime, worker: DeliveryWorker, stop: asyncio.Event, wake_fd: int | None
) -> None:
    if wake_fd is not None:
        supervisor.die_with_parent()
        supervisor.watch_pipe(wake_fd, worker.wake, stop.set)
    elif rt.engine.dialect.name == "sqlite":
        # One worker per SQLite database: claims still held were left by a dead process.
        await release_claims(rt)
    await worker.run(stop)


async def _maintain(rt: Runtime, stop: asyncio.Event) -> None:
    """Hourly: prune activity older than ACTIVITY_RETENTION_DAYS."""
    retention = timedelta(days=rt.settings.activity_retention_days)
    while not stop.is_set():
        try:
            async with session_scope(rt.sessionmaker) as session:
                pruned = await activity.prune(session, retention)
            if pruned:
                log.info("pruned %d activity rows older than %s", pruned, retention)
        except OUTAGE_ERRORS as exc:
            log.warning("activity pruning skipped: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MAINTENANCE_INTERVAL)


async def release_claims(rt: Runtime, holder_prefix: str | None = None) -> None:
    """Put deliveries claimed by a process that died back in the queue."""
    async with session_scope(rt.sessionmaker) as session:
        released = await queue.release_claims(session, holder_prefix)
    if released:
        log.info("released %d deliveries claimed by a process that died", released)


def delivery_worker(rt: Runtime) -> DeliveryWorker:
    """A worker configured from settings (the SMTP server's in-session attempt uses one too)."""
    s = rt.settings
    smarthost = None
    if s.smarthost:
        host, _, port = s.smarthost.rpartition(":")
        smarthost = Target(host, host, int(port))
    config = WorkerConfig(
        hostname=s.hostname,
        delivery_port=s.delivery_port,
        relay=_relay_config(s, smarthost),
        smarthost=smarthost,
        # Where MX delivery may connect.
        networks=DeliveryNetworks.for_listener(
            s.delivery_allowed_networks, s.smtp_host, s.smtp_port
        ),
        lease=timedelta(seconds=s.delivery_lease),
        connection_idle=IDLE_LIMIT,
        linger=LINGER,
    )
    return DeliveryWorker(
        rt.sessionmaker,
        rt.resolver,
        config,
        transactions=rt.transactions,
        signing=live_signing(s, rt.sessionmaker),
    )


def _relay_config(s: Settings, smarthost: Target | None) -> RelayConfig:
    """To an MX: STARTTLS as TLS_POLICY says, no credentials; through a smarthost: its
    own TLS mode, certificate check and credentials."""
    return RelayConfig(
        local_hostname=s.hostname,
        tls_policy=s.tls_policy,
        username=s.smarthost_username if smarthost else None,
        password=s.smarthost_password if smarthost else None,
        implicit_tls=bool(smarthost) and s.smarthost_tls == "implicit",
        starttls=not smarthost or s.smarthost_tls == "starttls",
        verify_certificates=bool(smarthost) and s.smarthost_tls_verify,
        ca_file=s.smarthost_ca_file if smarthost else None,
    )
