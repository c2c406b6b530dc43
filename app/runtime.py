"""Assembling and running the service's parts from settings; used only by the CLI.

``serve`` runs the API and the SMTP server, with the delivery worker (and SMTP processes
beyond the first) as child processes it supervises; ``api``, ``smtp`` and ``worker`` run
one part each, for scaling out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import supervisor
from app.config import Settings
from app.db.engine import (
    create_engine,
    create_sessionmaker,
    create_sqlite_writer,
    session_scope,
)
from app.db.group_commit import SessionTransactions, ThreadTransactions, Transactions
from app.db.reader import Reader, create_reader
from app.delivery.connections import IDLE_LIMIT
from app.delivery.mx import Target
from app.delivery.relay import RelayConfig
from app.delivery.worker import DeliveryWorker, WorkerConfig
from app.resolver import DnsResolver
from app.routing.networks import DeliveryNetworks
from app.routing.srs import Srs
from app.services import activity, queue, server_state
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.limits import Gate, MemoryBudget, PenaltyBox, SessionLimits
from app.smtp.server import start_server, tls_context

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 3600.0
LINGER = 0.05  # seconds the worker waits, once woken, for more mail to batch
DATABASE_ERRORS = (OperationalError, InterfaceError, OSError)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    reader: Reader  # the RCPT look-up's queries (app.db.reader)
    resolver: DnsResolver
    transactions: Transactions  # where the SMTP server's group commits run


@contextlib.asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    engine = create_engine(settings.database_url)
    reader = create_reader(engine)
    sessionmaker = create_sessionmaker(engine)
    transactions: Transactions
    if engine.dialect.name == "sqlite":
        transactions = ThreadTransactions(create_sqlite_writer(settings.database_url))
    else:
        transactions = SessionTransactions(sessionmaker)
    try:
        yield Runtime(
            settings,
            engine,
            sessionmaker,
            reader,
            DnsResolver(settings.dns_nameservers),
            transactions,
        )
    finally:
        await engine.dispose()
        await reader.dispose()
        if isinstance(transactions, ThreadTransactions):
            transactions.close()


async def load_srs(rt: Runtime) -> Srs:
    """SRS with the configured secret, or the one generated on first start and shared by
    every node through the database (so any node reverses what another rewrote)."""
    secret = rt.settings.srs_secret
    if not secret:
        async with session_scope(rt.sessionmaker) as session:
            secret = await server_state.load(session, server_state.SRS_SECRET_KEY)
    if not secret:
        with contextlib.suppress(IntegrityError):  # another node stored one first
            async with session_scope(rt.sessionmaker) as session:
                await server_state.store(
                    session, server_state.SRS_SECRET_KEY, secrets.token_urlsafe(32)
                )
        async with session_scope(rt.sessionmaker) as session:
            secret = await server_state.load(session, server_state.SRS_SECRET_KEY)
    assert secret
    return Srs(secret, rt.settings.hostname)


def delivery_worker(rt: Runtime) -> DeliveryWorker:
    s = rt.settings
    smarthost = None
    if s.smarthost:
        host, _, port = s.smarthost.rpartition(":")
        smarthost = Target(host, host, int(port))
    relay = RelayConfig(
        local_hostname=s.hostname,
        tls_policy=s.tls_policy,
        username=s.smarthost_username if smarthost else None,
        password=s.smarthost_password if smarthost else None,
        implicit_tls=bool(smarthost) and s.smarthost_tls == "implicit",
        starttls=not smarthost or s.smarthost_tls == "starttls",
        verify_certificates=bool(smarthost) and s.smarthost_tls_verify,
        ca_file=s.smarthost_ca_file if smarthost else None,
    )
    config = WorkerConfig(
        hostname=s.hostname,
        delivery_port=s.delivery_port,
        relay=relay,
        smarthost=smarthost,
        networks=delivery_networks(s),
        lease=timedelta(seconds=s.delivery_lease),
        connection_idle=IDLE_LIMIT,
        linger=LINGER,
    )
    return DeliveryWorker(rt.sessionmaker, rt.resolver, config, transactions=rt.transactions)


def delivery_networks(s: Settings) -> DeliveryNetworks:
    """Where MX delivery may connect."""
    return DeliveryNetworks.for_listener(s.delivery_allowed_networks, s.smtp_host, s.smtp_port)


def destination_networks(s: Settings) -> DeliveryNetworks:
    return DeliveryNetworks.for_destinations(
        s.delivery_allowed_networks, s.smtp_host, s.smtp_port, smarthost=bool(s.smarthost)
    )


async def run_worker(
    rt: Runtime, worker: DeliveryWorker, stop: asyncio.Event, wake_fd: int | None = None
) -> None:
    """The delivery worker; ``wake_fd``: it is serve's child, woken through this pipe."""
    if wake_fd is not None:
        supervisor.die_with_parent()
        supervisor.watch_pipe(wake_fd, worker.wake, stop.set)
    elif rt.engine.dialect.name == "sqlite":
        # One worker per SQLite database: claims still held were left by a dead process.
        await release_claims(rt)
    await worker.run(stop)


async def release_claims(rt: Runtime, holder_prefix: str | None = None) -> None:
    async with session_scope(rt.sessionmaker) as session:
        released = await queue.release_claims(session, holder_prefix)
    if released:
        log.info("released %d deliveries claimed by a process that died", released)


async def run_maintenance(rt: Runtime, stop: asyncio.Event) -> None:
    """Hourly: prune activity older than ACTIVITY_RETENTION_DAYS."""
    retention = timedelta(days=rt.settings.activity_retention_days)
    while not stop.is_set():
        try:
            async with session_scope(rt.sessionmaker) as session:
                pruned = await activity.prune(session, retention)
            if pruned:
                log.info("pruned %d activity rows older than %s", pruned, retention)
        except DATABASE_ERRORS as exc:
            log.warning("activity pruning skipped: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), MAINTENANCE_INTERVAL)


async def run_smtp(
    rt: Runtime,
    worker: DeliveryWorker | None,
    stop: asyncio.Event,
    on_queued: Callable[[], None] | None = None,
) -> None:
    """The SMTP server; ``on_queued`` tells the delivery worker of new mail. The in-session
    delivery attempt uses ``worker`` when it runs in this process, or a worker of its own
    that only does that."""
    s = rt.settings
    if not s.postmaster:
        log.warning(
            "MAILROUTE_POSTMASTER is not set: mail for <postmaster> is refused, "
            "though RFC 5321 4.5.1 requires a server to take it"
        )
    penalty = PenaltyBox()
    handler = InboundHandler(
        rt.sessionmaker,
        await load_srs(rt),
        InboundConfig(
            hostname=s.hostname,
            queue_lifetime=s.queue_lifetime,
            inline_delivery_timeout=s.inline_delivery_timeout,
            postmaster=s.postmaster,
        ),
        on_queued=on_queued,
        inline=worker or delivery_worker(rt),
        reader=rt.reader,
        transactions=rt.transactions,
        penalty=penalty,
    )
    tls = (
        tls_context(s.tls_cert_file, s.tls_key_file) if s.tls_cert_file and s.tls_key_file else None
    )
    gate = Gate(
        max_per_ip=s.max_connections_per_ip,
        max_total=s.max_connections,
        messages_per_minute=s.max_messages_per_ip,
        penalty=penalty,
    )
    limits = SessionLimits(
        timeout=s.smtp_timeout, min_data_rate=s.smtp_min_data_rate, error_limit=s.smtp_error_limit
    )
    server = await start_server(
        handler,
        host=s.smtp_host,
        port=s.smtp_port,
        max_message_size=s.max_message_size,
        tls=tls,
        gate=gate,
        limits=limits,
        budget=MemoryBudget(s.max_inflight_bytes),
        reuse_port=s.smtp_process_count > 1 and supervisor.reuse_port_supported(),
    )
    log.info("SMTP server listening on %s:%d", s.smtp_host, s.smtp_port)
    await stop.wait()
    # Keep listening while sessions finish, so new clients hear 421 4.3.2, not a refusal.
    gate.draining = True
    try:
        await asyncio.wait_for(gate.wait_idle(), s.shutdown_timeout)
    except TimeoutError:
        log.warning(
            "%d SMTP sessions still open after %.0f s; closing", gate.active, s.shutdown_timeout
        )
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(handler.drain(), 5)


async def run(
    settings: Settings, *, api: bool, smtp: bool, worker: bool, wake_fd: int | None = None
) -> None:
    """Run the chosen parts until SIGTERM or SIGINT, then stop them together. All three
    (``serve``) run the worker, and SMTP beyond one process, as children. ``wake_fd``
    is given to serve's children: the wake pipe's end an SMTP child writes to, or the
    one the worker child reads."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with runtime(settings) as rt:
        if api and smtp and worker:
            tasks = await serve(rt, stop)
        else:
            tasks = []
            on_queued: Callable[[], None] | None = None
            the_worker = delivery_worker(rt) if worker else None
            if the_worker is not None:
                tasks.append(run_worker(rt, the_worker, stop, wake_fd))
                tasks.append(run_maintenance(rt, stop))
                on_queued = the_worker.wake
            elif wake_fd is not None:
                on_queued = supervisor.pipe_waker(wake_fd)
            if smtp:
                tasks.append(run_smtp(rt, the_worker, stop, on_queued))
                if wake_fd is not None:
                    tasks.append(supervisor.stop_when_orphaned(stop))
            if api:
                tasks.append(_run_api(rt, stop, on_queued))
        await asyncio.gather(*(_stopping_all_on_error(task, stop) for task in tasks))


async def serve(rt: Runtime, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
    """The API and one SMTP listener here; the delivery worker and any further SMTP
    processes as children (app.supervisor), all woken through one pipe."""
    s = rt.settings
    if rt.engine.dialect.name == "sqlite":
        await release_claims(rt)  # before any child runs: whatever is claimed is stale
    read_end, write_end = supervisor.wake_pipe()
    wake = supervisor.pipe_waker(write_end)
    host = socket.gethostname()

    async def release_dead(pid: int) -> None:
        # DeliveryWorker ids are host:pid:random.
        with contextlib.suppress(*DATABASE_ERRORS):
            await release_claims(rt, f"{host}:{pid}:")

    children = [
        supervisor.Child(
            "delivery worker", ["worker", supervisor.WAKE_FD_OPTION, str(read_end)], [read_end]
        )
    ]
    children += [
        supervisor.Child(
            f"SMTP process {n}", ["smtp", supervisor.WAKE_FD_OPTION, str(write_end)], [write_end]
        )
        for n in range(1, s.smtp_process_count)
    ]
    return [
        *(supervisor.supervise(c, stop, s.shutdown_timeout, release_dead) for c in children),
        run_smtp(rt, None, stop, wake),
        _run_api(rt, stop, wake),
    ]


async def _run_api(rt: Runtime, stop: asyncio.Event, on_queued: Callable[[], None] | None) -> None:
    # Imported here: FastAPI and uvicorn cost a process about 25 MiB, which the worker
    # and SMTP children need not carry.
    from app.api.server import run_api

    await run_api(
        rt.settings,
        rt.sessionmaker,
        rt.resolver,
        stop,
        on_queued,
        srs=await load_srs(rt),
        networks=destination_networks(rt.settings),
    )


async def _stopping_all_on_error(part: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    try:
        await part
    except BaseException:
        stop.set()  # one part failing (a port in use, say) stops the others cleanly
        raise
