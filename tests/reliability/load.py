"""Many SMTP clients at once, each message with a unique id, retried until answered 250.

A message counts as accepted only when its client read the 250 at the end of DATA: a
session that died before that reply did not hand the message over (RFC 5321 6.1), so
the client sends it again, as a real MTA would.
"""

from __future__ import annotations

import queue
import re
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.delivery.sink import Received

SENDER = "load@sender.example"
CLIENT_NAME = "client.example"
ID_HEADER = "X-Load-Id"
_ID = re.compile(rb"^X-Load-Id: (\d+)\r?$", re.MULTILINE)


def load_message(number: int, recipient: str) -> bytes:
    return (
        f"From: <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: load {number}\r\n"
        f"Message-ID: <load-{number}@sender.example>\r\n{ID_HEADER}: {number}\r\n\r\n"
        f"Message number {number}.\r\n"
    ).encode()


def load_ids(received: Iterable[Received]) -> Counter[int]:
    """How often each message id reached the sink."""
    found: Counter[int] = Counter()
    for message in received:
        match = _ID.search(message.content)
        assert match is not None, message.content[:500]
        found[int(match.group(1))] += 1
    return found


@dataclass
class Load:
    """``count`` messages to ``recipient`` from ``clients`` threads, until ``deadline``."""

    host: str
    port: int
    recipient: str
    count: int
    clients: int = 8
    timeout: float = 10.0  # per SMTP command
    accepted: set[int] = field(default_factory=set)
    attempts: int = 0  # mail transactions begun
    failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _todo: queue.SimpleQueue[int] = field(default_factory=queue.SimpleQueue)
    _threads: list[threading.Thread] = field(default_factory=list)
    _deadline: float = 0.0

    def start(self, seconds: float) -> Load:
        self._deadline = time.monotonic() + seconds
        for number in range(self.count):
            self._todo.put(number)
        self._threads = [
            threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            for i in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def wait_accepted(self, count: int, timeout: float) -> int:
        """Block until at least ``count`` messages were accepted; how many were."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.accepted) >= count, timeout):
                raise TimeoutError(f"{len(self.accepted)} of {count} accepted: {self.failures}")
            return len(self.accepted)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(max(0.0, self._deadline - time.monotonic()) + self.timeout * 4)
        assert not any(t.is_alive() for t in self._threads), "load clients still running"

    def _client(self) -> None:
        client: smtplib.SMTP | None = None
        try:
            while time.monotonic() < self._deadline:
                try:
                    number = self._todo.get_nowait()
                except queue.Empty:
                    return
                while True:
                    client = client or self._connect()
                    if client is not None and self._send(client, number):
                        break
                    if client is not None:  # the session is in doubt: start a new one
                        client.close()
                        client = None
                    if time.monotonic() > self._deadline:
                        return
                    time.sleep(0.05)  # the server is down or refusing: back off briefly
                with self._lock:
                    self.accepted.add(number)
                    self._lock.notify_all()
        finally:
            if client is not None:
                client.close()

    def _connect(self) -> smtplib.SMTP | None:
        try:
            client = smtplib.SMTP(
                self.host, self.port, local_hostname=CLIENT_NAME, timeout=self.timeout
            )
            code, _ = client.ehlo()
        except (smtplib.SMTPException, OSError) as exc:
            self._failed(type(exc).__name__)
            return None
        if code != 250:
            client.close()
            self._failed(f"{code} at EHLO")
            return None
        return client

    def _send(self, client: smtplib.SMTP, number: int) -> bool:
        """One mail transaction for message ``number`` on an open session (several go over
        one session, as an MTA does); whether its DATA got a 250."""
        with self._lock:
            self.attempts += 1
        try:
            for code, _ in (client.mail(SENDER), client.rcpt(self.recipient)):
                if code != 250:
                    return self._failed(f"{code} before DATA")
            code, _ = client.data(load_message(number, self.recipient))
            return code == 250 or self._failed(f"{code} at DATA")
        except (smtplib.SMTPException, OSError) as exc:
            return self._failed(type(exc).__name__)

    def _failed(self, why: str) -> bool:
        with self._lock:
            self.failures[why] += 1
        return False
