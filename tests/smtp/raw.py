"""A raw SMTP client on a socket: it sends exactly the bytes a test gives it (smtplib would
fix line endings, stuff dots and refuse NUL), and reads replies as lists of lines.

Blocking: call it from a test through ``in_thread``.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

# RFC 5321 4.2: a reply line is a 3-digit code, "-" (more lines follow) or " " (the last).
REPLY_LINE = re.compile(rb"^(?P<code>[2-5][0-5]\d)(?P<sep>[ -])(?P<text>.*)$", re.DOTALL)
TIMEOUT = 10.0


@dataclass
class Reply:
    code: int
    lines: list[bytes]  # the text of each line, after the code and separator

    @property
    def text(self) -> bytes:
        return self.lines[-1]

    def __str__(self) -> str:
        return " | ".join(f"{self.code} {line.decode('utf-8', 'replace')}" for line in self.lines)


class MalformedReply(AssertionError):
    """The server sent a line that is not ``NNN[ -]text``."""


@dataclass
class RawSmtp:
    sock: socket.socket
    _buffer: bytes = b""
    raw_lines: list[bytes] = field(default_factory=list)  # every line received, as sent

    @classmethod
    def connect(
        cls, host: str, port: int, timeout: float = TIMEOUT, source: str | None = None
    ) -> RawSmtp:
        """``source``: the loopback address to connect from (127.0.0.x), to be another client."""
        source_address = (source, 0) if source else None
        return cls(socket.create_connection((host, port), timeout, source_address))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Reply:
        """The next reply; ConnectionError if the server closed the connection first."""
        lines: list[bytes] = []
        while True:
            match = REPLY_LINE.match(self._line())
            if match is None:
                raise MalformedReply(f"not a reply line: {self.raw_lines[-1]!r}")
            lines.append(match["text"])
            if match["sep"] == b" ":
                return Reply(int(match["code"]), lines)

    def replies(self, count: int) -> list[Reply]:
        return [self.reply() for _ in range(count)]

    def command(self, line: bytes) -> Reply:
        self.send(line + b"\r\n")
        return self.reply()

    def replies_until_closed(self) -> list[Reply]:
        """Every reply until the server closes the connection."""
        answers: list[Reply] = []
        while True:
            try:
                answers.append(self.reply())
            except ConnectionError:
                return answers

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as exc:
                raise ConnectionError("connection reset") from exc
            if not chunk:
                if self._buffer:
                    raise MalformedReply(f"unterminated reply line: {self._buffer!r}")
                raise ConnectionError("connection closed by the server")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        self.raw_lines.append(line)
        return line


def greeted(
    host: str, port: int, helo: bytes | None = b"EHLO client.example", source: str | None = None
) -> RawSmtp:
    """A connection past the 220 greeting and (unless ``helo`` is None) EHLO."""
    client = RawSmtp.connect(host, port, source=source)
    greeting = client.reply()
    assert greeting.code == 220, greeting
    if helo is not None:
        answer = client.command(helo)
        assert answer.code == 250, answer
    return client
