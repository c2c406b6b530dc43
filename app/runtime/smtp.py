"""The ``smtp`` role: the inbound SMTP server.

Run alone (``mailroute smtp``), a ``worker`` somewhere delivers what it queues. As
serve's child (``wake_fd``) it wakes serve's worker through the pipe and stops once
serve is gone; serve itself runs one :func:`listen` beside its API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import dns.resolver

from app import supervisor
from app.config import Settings
from app.inbound_auth.checker import InboundChecks
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.policy import Mode
from app.inbound_auth.rspamd import Rspamd
from app.resolver import DnsResolver
from app.runtime import Runtime, load_srs, together
from app.runtime.worker import delivery_worker
from app.smtp.blocklists import Blocklists
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.limits import Gate, MemoryBudget, PenaltyBox, SessionLimits
from app.smtp.server import start_server, tls_context

log = logging.getLogger(__name__)

CLOSE_WAIT = 5.0
# Answers the inbound checks keep (each an RRset of a few hundred octets): a few MiB at
# most, however many sender domains an attacker makes up; the least recently used go.
DNS_CACHE_ENTRIES = 10_000  # seconds for the listener to close and stored mail to be handed on


async def run(rt: Runtime, stop: asyncio.Event, wake_fd: int | None = None) -> None:
    """The SMTP server; ``wake_fd``: it is serve's child, waking serve's worker."""
    if wake_fd is None:
        await together(stop, listen(rt, stop))
    else:
        waker = supervisor.pipe_waker(wake_fd)
        await together(stop, listen(rt, stop, waker), supervisor.stop_when_orphaned(stop))


async def listen(
    rt: Runtime, stop: asyncio.Event, on_queued: Callable[[], None] | None = None
) -> None:
    """Serve SMTP until ``stop``, then let open sessions finish. ``on_queued`` tells the
    delivery worker of new mail; the in-session delivery attempt uses a worker of its
    own that only does that."""
    s = rt.settings
    if not s.postmaster:
        log.warning(
            "MAILROUTE_POSTMASTER is not set: mail for <postmaster> is refused, "
            "though RFC 5321 4.5.1 requires a server to take it"
        )
    penalty = PenaltyBox()
    checks = inbound_checks(s)
    handler = await _handler(rt, penalty, on_queued, checks)
    gate = Gate(
        max_per_ip=s.max_connections_per_ip,
        max_total=s.max_connections,
        messages_per_minute=s.max_messages_per_ip,
        penalty=penalty,
        blocklists=Blocklists(s.dnsbl, rt.resolver) if s.dnsbl else None,
    )
    try:
        server = await _start(s, handler, gate)
        log.info("SMTP server listening on %s:%d", s.smtp_host, s.smtp_port)
        await stop.wait()
        await _drain(s, server, gate, handler)
    finally:
        if checks is not None:
            await checks.aclose()


def inbound_checks(s: Settings) -> InboundChecks | None:
    """SPF, DKIM, DMARC and ARC as MAILROUTE_INBOUND_AUTH says, through the configured DNS
    servers; rspamd when MAILROUTE_RSPAMD_URL names one. None: nothing to check."""
    if s.inbound_auth == "off" and not s.rspamd_url:
        return None
    spam_filter = None
    if s.rspamd_url:
        spam_filter = Rspamd(
            s.rspamd_url, timeout=s.rspamd_timeout, password=s.rspamd_password or None
        )
    # One cache for both resolvers of the checks, bounded: a sender's SPF and DMARC records
    # are asked once per TTL, not once per message (bench/checks.py measures the gain).
    cache = dns.resolver.LRUCache(DNS_CACHE_ENTRIES)
    timeout = s.inbound_auth_dns_timeout
    return InboundChecks(
        mode=Mode(s.inbound_auth),
        authserv_id=s.hostname,
        resolver=DnsResolver(s.dns_nameservers, lifetime=timeout, cache=cache),
        lookups=Lookups(s.dns_nameservers, timeout, cache=cache),
        spam_filter=spam_filter,
        tempfail_spam=s.rspamd_failure == "tempfail",
        # SPF may take ten look-ups (RFC 7208 4.6.4) one after the other.
        time_limit=4 * timeout,
    )


async def _handler(
    rt: Runtime,
    penalty: PenaltyBox,
    on_queued: Callable[[], None] | None,
    checks: InboundChecks | None,
) -> InboundHandler:
    s = rt.settings
    return InboundHandler(
        rt.sessionmaker,
        await load_srs(rt),
        InboundConfig(
            hostname=s.hostname,
            queue_lifetime=s.queue_lifetime,
            inline_delivery_timeout=s.inline_delivery_timeout,
            postmaster=s.postmaster,
        ),
        on_queued=on_queued,
        inline=delivery_worker(rt),
        reader=rt.reader,
        transactions=rt.transactions,
        penalty=penalty,
        checks=checks,
    )


async def _start(s: Settings, handler: InboundHandler, gate: Gate) -> asyncio.Server:
    tls = None
    if s.tls_cert_file and s.tls_key_file:
        tls = tls_context(s.tls_cert_file, s.tls_key_file)
    return await start_server(
        handler,
        host=s.smtp_host,
        port=s.smtp_port,
        max_message_size=s.max_message_size,
        tls=tls,
        gate=gate,
        limits=SessionLimits(
            timeout=s.smtp_timeout,
            min_data_rate=s.smtp_min_data_rate,
            error_limit=s.smtp_error_limit,
        ),
        budget=MemoryBudget(s.max_inflight_bytes),
        reuse_port=s.smtp_process_count > 1 and supervisor.reuse_port_supported(),
    )


async def _drain(s: Settings, server: asyncio.Server, gate: Gate, handler: InboundHandler) -> None:
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
        await asyncio.wait_for(server.wait_closed(), CLOSE_WAIT)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(handler.drain(), CLOSE_WAIT)
