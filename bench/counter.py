"""The running counter Postfix's test programs print (``smtp-sink -c``, ``smtp-source -c``).

Both rewrite one line with carriage returns as they go (``sess=3 quit=3 mesg=2\\r``,
``2\\r``); a thread reads the pipe so the bench always knows the latest value and when it
last moved, which is how a stalled run is told from a slow one.
"""

from __future__ import annotations

import re
import threading
import time
from typing import IO


class StalledError(RuntimeError):
    """A counter stopped moving before reaching its target."""


class RunningCounter:
    """The latest number matched by ``pattern`` (group 1) in what ``stream`` says."""

    def __init__(self, stream: IO[bytes], pattern: bytes = rb"^(\d+)$") -> None:
        self._stream = stream
        self._pattern = re.compile(pattern)
        self._value = 0
        self._moved = time.monotonic()
        self._changed = threading.Condition()
        self.closed = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="counter")
        self._thread.start()

    @property
    def value(self) -> int:
        with self._changed:
            return self._value

    def _read(self) -> None:
        pending = b""
        while chunk := self._stream.read1(65536):  # type: ignore[attr-defined]
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            values = [int(m[1]) for line in lines if (m := self._pattern.search(line))]
            if values:
                with self._changed:
                    self._value, self._moved = values[-1], time.monotonic()
                    self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, target: int, *, stall: float, what: str) -> float:
        """Block until the value reaches ``target``; the monotonic time it did. Raises
        StalledError if it does not move for ``stall`` seconds or the stream ends first."""
        with self._changed:
            while self._value < target:
                idle = time.monotonic() - self._moved
                if self.closed or idle > stall:
                    why = "its output ended" if self.closed else f"no progress in {stall:.0f} s"
                    raise StalledError(f"{what}: {self._value} of {target}, {why}")
                self._changed.wait(min(1.0, stall - idle + 0.01))
            return time.monotonic()

    def stalled_for(self) -> float:
        """Seconds since the value last changed."""
        with self._changed:
            return time.monotonic() - self._moved
