"""DNS blocklists asked when a client connects, as Postfix's reject_rbl_client: a client
whose address a zone lists is refused with ``554 5.7.1`` instead of the greeting
(app.smtp.enforcement). Every zone is asked at once; the first listing wins.

A look-up that fails or takes too long lets the client in (logged), as Postfix does: a
blocklist's outage must not become ours. Verdicts are kept a few minutes per address,
so a client that reconnects does not cost a query each time; failures are not kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from app.errors import DnsError, DnsNoSuchDomain
from app.ratelimit import Clock
from app.routing.dnsbl import ReplyFilter, lists, query_name

log = logging.getLogger(__name__)

Zone = tuple[str, ReplyFilter | None]  # app.config.DnsblZone


class ARecords(Protocol):
    async def ipv4(self, name: str) -> list[str]:
        """A records of ``name``; [] when none. Raises DnsError."""


@runtime_checkable
class ConnectionRefusals(Protocol):
    """A handler that logs a client refused at connect (app.smtp.handler's InboundHandler:
    a row in the activity log)."""

    def connection_refused(self, ip: str, reply: str) -> None: ...


class Blocklists:
    """The zones to ask, through ``resolver``, within ``timeout`` seconds in all; verdicts
    kept ``ttl`` seconds for at most ``max_cached`` addresses, the oldest forgotten first."""

    def __init__(
        self,
        zones: Sequence[Zone],
        resolver: ARecords,
        *,
        timeout: float = 5.0,
        ttl: float = 300.0,
        max_cached: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.zones = tuple(zones)
        self._resolver = resolver
        self._timeout = timeout
        self._ttl = ttl
        self._max_cached = max_cached
        self._clock = clock
        self._verdicts: dict[str, tuple[float, str | None]] = {}  # ip -> (until, zone)

    async def listing(self, ip: str) -> str | None:
        """The zone that lists ``ip``; None when none does or none could be asked."""
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return None  # no address to ask about (a peer the socket did not name)
        now = self._clock()
        cached = self._verdicts.get(ip)
        if cached is not None and now < cached[0]:
            return cached[1]
        zone, decided = await self._ask_all(ip)
        if decided:
            self._verdicts.pop(ip, None)
            self._verdicts[ip] = (now + self._ttl, zone)  # insertion order: oldest first
            while len(self._verdicts) > self._max_cached:
                del self._verdicts[next(iter(self._verdicts))]
        return zone

    async def _ask_all(self, ip: str) -> tuple[str | None, bool]:
        """The listing zone, and whether the verdict holds: a listing does, and "not
        listed" does when every zone answered."""
        tasks = [asyncio.ensure_future(self._ask(ip, zone, f)) for zone, f in self.zones]
        failed = False
        try:
            async with asyncio.timeout(self._timeout):
                for next_done in asyncio.as_completed(tasks):
                    try:
                        zone = await next_done
                    except DnsError as exc:
                        log.warning("%s: DNS blocklist not asked, client let in: %s", ip, exc)
                        failed = True
                        continue
                    if zone is not None:
                        return zone, True
        except TimeoutError:
            log.warning(
                "%s: DNS blocklists gave no answer within %.1f s, client let in", ip, self._timeout
            )
            return None, False
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # none left unretrieved
        return None, not failed

    async def _ask(self, ip: str, zone: str, reply_filter: ReplyFilter | None) -> str | None:
        try:
            replies = await self._resolver.ipv4(query_name(ip, zone))
        except DnsNoSuchDomain:
            return None  # RFC 5782 2.1: not listed
        return zone if any(lists(reply, reply_filter) for reply in replies) else None
