"""Token buckets, one per key: API requests per token, failed authentications per address,
MAIL commands per SMTP client address.

A bucket holds up to ``burst`` requests and refills at ``per_minute / 60`` a second; each
request takes one. State lives in this process's memory: with several nodes each limits on
its own, so a client that spreads its requests over n nodes gets up to n times the rate.
The clock is injected (``time.monotonic`` in production), so tests move time, not sleep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

Clock = Callable[[], float]
# Beyond this many keys (by default), idle (full) buckets are forgotten: a full bucket is
# the same as none, so forgetting one changes no answer. Bounds memory against many addresses.
MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Rate:
    per_minute: int
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60


class RateLimiter:
    def __init__(
        self, rate: Rate, *, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (level, as of)

    def take(self, key: Hashable) -> int | None:
        """Take one request from ``key``'s bucket: None if it had one, else the whole
        seconds until it will (for ``Retry-After``), and nothing is taken."""
        now = self._clock()
        level = self._level(key, now)
        if level >= 1:
            self._store(key, level - 1, now)
            return None
        return self._wait(level)

    def give_back(self, key: Hashable) -> None:
        """Return one request taken from ``key``'s bucket (it turned out not to count)."""
        now = self._clock()
        self._store(key, min(float(self.rate.burst), self._level(key, now) + 1), now)

    def _level(self, key: Hashable, now: float) -> float:
        level, as_of = self._buckets.get(key, (float(self.rate.burst), now))
        return min(float(self.rate.burst), level + (now - as_of) * self.rate.per_second)

    def _wait(self, level: float) -> int:
        return max(1, math.ceil((1 - level) / self.rate.per_second))

    def _store(self, key: Hashable, level: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            self._forget_idle(now)
        self._buckets[key] = (level, now)

    def _forget_idle(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.rate.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:  # all busy: forget the longest-untouched half
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for key in by_age[: len(by_age) // 2]:
                del self._buckets[key]
