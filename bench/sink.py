"""The destination of every forwarded message: Postfix's ``smtp-sink`` on loopback.

smtp-sink is one event-driven process that reads each message and throws it away; it
announces PIPELINING and keeps up with thousands of messages a second, so it is not what a
forwarding figure measures (its CPU time is recorded per round to check). With ``-c`` it
rewrites a counter line on stdout after every message (``mesg=N``), which a reader thread
follows: that is how the bench knows when the sink holds every message of a round.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bench import processes
from bench.counter import RunningCounter
from bench.ports import HOST, free_port, smtp_greets

SMTP_SINK = "/usr/sbin/smtp-sink"
# smtp-sink's default limit on simultaneous connections; it also serves as listen backlog.
BACKLOG = 256
START_TIMEOUT = 10.0


@dataclass
class Sink:
    process: subprocess.Popen[bytes]
    port: int
    counter: RunningCounter

    @property
    def address(self) -> str:
        """``host:port`` as mailroute's smarthost setting wants it."""
        return f"{HOST}:{self.port}"

    def received(self) -> int:
        """Messages received so far (counted when the client's final "." arrives)."""
        return self.counter.value

    def wait_for(self, count: int, *, stall: float) -> float:
        """Block until the sink has received ``count`` messages in all; the monotonic time."""
        return self.counter.wait_for(count, stall=stall, what="smtp-sink")

    def cpu_seconds(self) -> float:
        return processes.cpu_seconds([self.process.pid])


@contextlib.contextmanager
def running_sink() -> Iterator[Sink]:
    """An smtp-sink on a free loopback port, stopped on the way out."""
    port = free_port()
    # -u: as root it must drop privileges after binding; -c: the running counter.
    command = [SMTP_SINK, "-c", "-u", "nobody", f"{HOST}:{port}", str(BACKLOG)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        sink = Sink(process, port, RunningCounter(process.stdout, rb"mesg=(\d+)"))
        deadline = time.monotonic() + START_TIMEOUT
        while not smtp_greets(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink on port {port} did not start")
            time.sleep(0.05)
        yield sink
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
