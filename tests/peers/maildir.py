"""Reading what a Maildir holds (https://cr.yp.to/proto/maildir.html): the delivered files and
the trace headers a delivering MTA puts on top of them."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Protocol names a Received header's WITH clause uses when the session was encrypted:
# "S" for STARTTLS (RFC 3848 section 2), on top of SMTPUTF8 (RFC 6531 section 3.7.3).
TLS_PROTOCOLS = frozenset({"ESMTPS", "ESMTPSA", "UTF8SMTPS", "UTF8SMTPSA"})

_WITH = re.compile(r"\bwith\s+(\S+)", re.IGNORECASE)


def create_maildir(path: Path, uid: int, gid: int) -> None:
    """Make ``path`` a Maildir owned by the user that delivers into it."""
    for part in (path, path / "tmp", path / "new", path / "cur"):
        part.mkdir(mode=0o700, exist_ok=True)
        os.chown(part, uid, gid)


def delivered_files(maildir: Path) -> list[Path]:
    """Delivered messages, oldest first. A delivery agent writes into tmp/ and renames into
    new/, so every file listed here is complete."""
    files = [f for part in ("new", "cur") for f in (maildir / part).glob("*") if f.is_file()]
    return sorted(files, key=lambda f: (f.stat().st_mtime_ns, f.name))


def headers(message: bytes) -> list[tuple[str, str]]:
    """The header fields, unfolded (RFC 5322 section 2.2.3), in order; names as written."""
    head = message.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields: list[tuple[str, str]] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name, value.strip()))
    return fields


def header(message: bytes, name: str) -> str | None:
    """The first field called ``name``: the one the delivering MTA prepended last."""
    return next((v for n, v in headers(message) if n.lower() == name.lower()), None)


def received_protocol(message: bytes) -> str:
    """The WITH clause of the topmost Received header (RFC 5321 section 4.4): how the last
    hop reached the receiving MTA, e.g. ``ESMTP``, ``ESMTPS`` or ``UTF8SMTP``."""
    received = header(message, "Received")
    match = _WITH.search(received or "")
    if match is None:
        raise AssertionError(f"no Received header with a WITH clause in {message[:400]!r}")
    return match.group(1).upper()


def received_over_tls(message: bytes) -> bool:
    return received_protocol(message) in TLS_PROTOCOLS


def summary(message: bytes) -> str:
    """One line to tell delivered messages apart in an assertion message."""
    return f"to={header(message, 'Delivered-To')!r} subject={header(message, 'Subject')!r}"
