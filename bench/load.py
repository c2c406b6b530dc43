"""The load: Postfix's ``smtp-source`` sending 4 KB messages over parallel sessions.

smtp-source opens a new session for every message unless given ``-d``. We keep that
default: an MX receives mostly one message per connection from many senders, so the cost
of a session (banner, HELO, QUIT, a new process or task) belongs in the figure. ``-d``
(``reuse_sessions``) measures the message path alone.

Two times per round, both from the moment smtp-source starts: until it exits (every
message accepted with 250: accepted/s) and until the sink holds every message
(forwarded/s, end to end).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass

from bench.counter import RunningCounter, StalledError
from bench.ports import HOST
from bench.service import DOMAIN
from bench.sink import Sink

SMTP_SOURCE = "/usr/sbin/smtp-source"
MESSAGE_BYTES = 4096
SENDER = "sender@src.example.com"
RECIPIENT = f"user@{DOMAIN}"
HELO_NAME = "load.example.com"
# A server that makes no progress this long has failed; a slow one has not.
STALL_SECONDS = 60.0


class LoadError(RuntimeError):
    """smtp-source failed, stalled, or the sink did not receive exactly what was sent."""


@dataclass(frozen=True)
class LoadResult:
    messages: int
    sessions: int
    accepted_seconds: float
    forwarded_seconds: float

    @property
    def accepted_per_s(self) -> float:
        return self.messages / self.accepted_seconds

    @property
    def forwarded_per_s(self) -> float:
        return self.messages / self.forwarded_seconds

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {
            "accepted_per_s": round(self.accepted_per_s, 1),
            "forwarded_per_s": round(self.forwarded_per_s, 1),
        }


def send(
    port: int,
    sink: Sink,
    *,
    messages: int,
    sessions: int,
    reuse_sessions: bool = False,
    sender: str = SENDER,
) -> LoadResult:
    """Send ``messages`` from ``sender`` (envelope and From:) to the server on ``port`` and
    wait until the sink has them all."""
    before = sink.received()
    command = [SMTP_SOURCE, "-c", "-s", str(sessions), "-m", str(messages)]
    command += ["-l", str(MESSAGE_BYTES), "-M", HELO_NAME, "-f", sender, "-t", RECIPIENT]
    command += ["-d"] if reuse_sessions else []
    started = time.monotonic()
    source = subprocess.Popen(
        [*command, f"{HOST}:{port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert source.stdout is not None
        accepted = RunningCounter(source.stdout)
        while not finished(source):
            if accepted.stalled_for() > STALL_SECONDS:
                raise LoadError(f"smtp-source stalled at {accepted.value} of {messages}")
        accepted_at = time.monotonic()
    finally:
        if source.poll() is None:
            source.kill()
        source.wait()
    errors = source.stderr.read().decode(errors="replace").strip() if source.stderr else ""
    if source.returncode != 0:
        raise LoadError(f"smtp-source exited {source.returncode}: {errors}")
    try:
        forwarded_at = sink.wait_for(before + messages, stall=STALL_SECONDS)
    except StalledError as exc:
        raise LoadError(f"the sink did not get every message: {exc}") from exc
    # A duplicate delivery would arrive just after the last message.
    time.sleep(0.2)
    if (extra := sink.received() - before - messages) != 0:
        raise LoadError(f"the sink received {extra} message(s) more than were sent")
    return LoadResult(messages, sessions, accepted_at - started, forwarded_at - started)


def finished(process: subprocess.Popen[bytes], wait: float = 1.0) -> bool:
    """Whether ``process`` exits within ``wait`` seconds (returning the moment it does)."""
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        return False
    return True
