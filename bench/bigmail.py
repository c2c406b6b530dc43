"""A large, realistic message: MIME headers, a short text part, and a random attachment
in base64 lines of 76 characters (RFC 2045 6.8), every line ending in CRLF."""

from __future__ import annotations

import base64
import random

MIB = 1024 * 1024
BOUNDARY = "=_bench_boundary_7f3a"
RAW_PER_LINE = 57  # 57 bytes are 76 base64 characters


def message_lines(size: int, sender: str, recipient: str, number: int) -> list[bytes]:
    """Lines of a message of about ``size`` bytes (within one line), CRLF included."""
    head = [
        f"From: Bench Sender <{sender}>",
        f"To: <{recipient}>",
        f"Subject: large message {number}",
        "Date: Sun, 29 Nov 2026 10:00:00 +0000",
        f"Message-ID: <large-{number}-{random.getrandbits(64):x}@sender.example.com>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"',
        "",
        f"--{BOUNDARY}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "The attachment is random data.",
        f"--{BOUNDARY}",
        "Content-Type: application/octet-stream",
        'Content-Disposition: attachment; filename="data.bin"',
        "Content-Transfer-Encoding: base64",
        "",
    ]
    lines = [line.encode("ascii") + b"\r\n" for line in head]
    tail = f"--{BOUNDARY}--\r\n".encode("ascii")
    room = size - sum(map(len, lines)) - len(tail)
    encoded = base64.b64encode(random.randbytes(room // 78 * RAW_PER_LINE))
    # Base64 never starts a line with ".", so no line needs dot-stuffing (RFC 5321 4.5.2).
    lines += [encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76)]
    lines.append(tail)
    return lines
