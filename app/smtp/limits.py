"""What one client may do, after Postfix's smtpd and anvil: how many sessions it may hold,
how much mail it may send per minute, how long it may take, how many errors it may make;
and how much message text all clients together may have us hold in memory.

The Gate and the MemoryBudget are shared by every session of one server (one process);
SessionLimits are the per-session settings each session enforces (app.smtp.enforcement).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

from app.ratelimit import Clock, Rate, RateLimiter
from app.smtp.blocklists import Blocklists
from app.smtp.replies import (
    S421_PENALTY,
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
    # Seconds a client has to read our 421 before the connection is cut: one that stops
    # reading cannot keep its place in the Gate.
    hang_up_grace: float = 5.0


DEFAULT_LIMITS = SessionLimits()
_T = TypeVar("_T")


class PenaltyBox:
    """Client addresses caught guessing, after Postfix's postscreen: ``strikes`` offences
    (forged or expired SRS addresses) within ``window`` seconds put an address in the box
    for ``duration`` seconds, during which its sessions hear 421 4.7.0.

    A 4-character SRS hash compared case-insensitively is one of about 2^21 values: at 5
    guesses per ``window`` and then an hour's wait, one address makes about 5 guesses an
    hour (README, Security and reliability). Memory is bounded: at most ``max_tracked``
    addresses, the oldest forgotten first.
    """

    def __init__(
        self,
        *,
        strikes: int = 5,
        window: float = 600.0,
        duration: float = 3600.0,
        max_tracked: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.strikes = strikes
        self.window = window
        self.duration = duration
        self._max_tracked = max_tracked
        self._clock = clock
        self._offences: dict[str, list[float]] = {}
        self._boxed: dict[str, float] = {}  # address -> until

    def strike(self, ip: str) -> bool:
        """Count one offence from ``ip``; True when it is (now) in the box."""
        now = self._clock()
        if self.is_boxed(ip):
            return True
        recent = [t for t in self._offences.pop(ip, ()) if now - t < self.window]
        recent.append(now)
        if len(recent) >= self.strikes:
            self._remember(self._boxed, ip, now + self.duration)
            return True
        self._remember(self._offences, ip, recent)
        return False

    def is_boxed(self, ip: str) -> bool:
        until = self._boxed.get(ip)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._boxed[ip]
        return False

    def _remember(self, table: dict[str, _T], ip: str, value: _T) -> None:
        table.pop(ip, None)
        table[ip] = value  # dicts keep insertion order: the first key is the oldest
        while len(table) > self._max_tracked:
            del table[next(iter(table))]


class Gate:
    """Who may open a session and send mail: nobody while draining for shutdown (421 4.3.2);
    no address in the ``penalty`` box (421 4.7.0); no more than ``max_per_ip`` sessions at
    once from one address, ``max_total`` in all (421); no more than
    ``messages_per_minute`` MAIL commands from one address (0: no limit), as a token
    bucket that holds a minute's worth. Sessions already open finish
    what they are doing. An admitted client that ``blocklists`` list hears 554 5.7.1
    instead of the greeting (app.smtp.enforcement)."""

    def __init__(
        self,
        *,
        max_per_ip: int | None = None,
        max_total: int | None = None,
        messages_per_minute: int = 0,
        penalty: PenaltyBox | None = None,
        blocklists: Blocklists | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.draining = False
        self.penalty = penalty
        self.blocklists = blocklists
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
        if self.penalty is not None and self.penalty.is_boxed(ip):
            return S421_PENALTY
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
