"""What one client may do, after Postfix's smtpd and anvil: how many sessions it may hold,
how much mail it may send per minute, how long it may take, how many errors it may make;
and how much message text all clients together may have us hold in memory.

The Gate and the MemoryBudget are shared by every session of one server (one process);
SessionLimits are the per-session settings the protocol enforces.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from app.ratelimit import Clock, Rate, RateLimiter
from app.smtp.replies import (
    S421_SHUTTING_DOWN,
    S421_TOO_MANY_CONNECTIONS,
    S421_TOO_MANY_FROM_YOU,
)


@dataclass(frozen=True, slots=True)
class SessionLimits:
    # RFC 5321 4.5.3.2.7: at least 5 minutes for each command. The clock restarts only when
    # a whole command has arrived, so a client trickling bytes cannot stretch it.
    timeout: float = 300.0
    # While the message streams in, every chunk buys time at this many bytes a second
    # (Postfix's smtpd_min_data_rate), but the time left is never more than ``timeout``: a
    # fast start banks nothing for a trickle after it. 0 checks inactivity only.
    min_data_rate: int = 500
    # smtpd_hard_error_limit: after this many 4xx/5xx replies, 421 and close.
    error_limit: int = 20
    # smtpd_junk_command_limit: NOOP, RSET, VRFY and HELP past this count as errors.
    junk_command_limit: int = 100


DEFAULT_LIMITS = SessionLimits()


class Gate:
    """Who may open a session and send mail: nobody while draining for shutdown (421 4.3.2);
    no more than ``max_per_ip`` sessions at once from one address, ``max_total`` in all
    (421); no more than ``messages_per_minute`` MAIL commands from one address (0: no
    limit), as a token bucket that holds a minute's worth. Sessions already open finish
    what they are doing."""

    def __init__(
        self,
        *,
        max_per_ip: int | None = None,
        max_total: int | None = None,
        messages_per_minute: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.draining = False
        self.max_per_ip = max_per_ip
        self.max_total = max_total
        self.active = 0
        self._per_ip: Counter[str] = Counter()
        self._mail = (
            RateLimiter(Rate(messages_per_minute, burst=messages_per_minute), clock=clock)
            if messages_per_minute > 0
            else None
        )
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self, ip: str) -> str | None:
        """None, and the session counted; or the reply that turns it away."""
        if self.draining:
            return S421_SHUTTING_DOWN
        if self.max_total is not None and self.active >= self.max_total:
            return S421_TOO_MANY_CONNECTIONS
        if self.max_per_ip is not None and self._per_ip[ip] >= self.max_per_ip:
            return S421_TOO_MANY_FROM_YOU
        self.active += 1
        self._per_ip[ip] += 1
        self._idle.clear()
        return None

    def closed(self, ip: str) -> None:
        self.active -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        if self.active == 0:
            self._idle.set()

    def allow_message(self, ip: str) -> bool:
        """Count one MAIL command from ``ip``; False when that is one too many for now.
        Refused attempts are not counted, so a client that waits gets through."""
        return self._mail is None or self._mail.take(ip) is None

    async def wait_idle(self) -> None:
        """Return once no session is open."""
        await self._idle.wait()


DEFAULT_INFLIGHT_BYTES = 256 * 1024 * 1024
# What a DATA must find free before its 354: room for the start of a message, so that a
# full budget turns new messages away at once rather than after they were sent.
DATA_RESERVE = 64 * 1024


class MemoryBudget:
    """Octets of message text that the sessions of one server may hold in memory at once,
    from the 354 until the message is stored or refused. A DATA that finds less than
    DATA_RESERVE free is answered 452 4.3.1 (RFC 5321 4.2.5: insufficient system storage);
    a message that outgrows the room left is dropped as it streams in and answered the
    same at its end. Every session gives back what it held however its DATA ends."""

    def __init__(self, limit: int = DEFAULT_INFLIGHT_BYTES) -> None:
        self.limit = limit
        self.held = 0

    def resize(self, current: int, wanted: int) -> bool:
        """Change a session's hold from ``current`` to ``wanted`` octets; False, and
        nothing changed, when growing it would pass the limit."""
        if wanted > current and self.held + wanted - current > self.limit:
            return False
        self.held += wanted - current
        return True
