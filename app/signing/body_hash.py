"""DKIM body hashes (RFC 6376 3.4.3, 3.4.4, 3.7) computed as the body goes past in pieces,
so that a large body is never copied whole: dkimpy canonicalizes the whole body in memory
(three copies of it for "relaxed"), and has no way to hash it in parts.

The hash is that of the body as dkimpy makes it, byte for byte (tests/signing/test_body_hash.py
compares the two): its parser first makes each bare LF a CRLF; "simple" then drops the empty
lines at the end (and adds a CRLF to a body that does not end with one: an empty body is one
CRLF); "relaxed" also drops the WSP before each CRLF, makes every other run of WSP one space,
and makes an empty body empty.

Streaming needs one thing held back: what may still turn out to be the body's end. Of each
piece the hasher keeps back the tail after its last byte of content: the line ends (which are
dropped if nothing follows them; kept as a count, so that megabytes of empty lines cost
nothing), then (relaxed) whether a run of WSP follows, then a CR that an LF may complete.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from app.message import Octets

PIECE = 64 * 1024  # the most of a body copied at once

_BARE_LF = re.compile(rb"(?<!\r)\n")
_WSP_BEFORE_CRLF = re.compile(rb"[\t ]+\r\n")
_WSP = re.compile(rb" ?\t[\t ]*| [ ]+[\t ]*")  # runs of WSP other than one space
_LONE_CR = re.compile(rb"\r(?=[^\n])")  # a CR something other than LF follows
_CRLFS = b"\r\n" * 4096


class BodyHash:
    """The sha256 of one canonical form of a body fed to :meth:`update` in pieces."""

    def __init__(self, *, relaxed: bool) -> None:
        self.relaxed = relaxed
        self._hash = hashlib.sha256()
        self._blank = 0  # line ends held back: empty lines at the end are dropped
        self._held = b""  # after them, held back: b" " (relaxed: a run of WSP), then b"\r"
        self._hashed = False  # whether any content went into the hash

    def update(self, data: Octets | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), PIECE):
            self._piece(self._held + bytes(view[start : start + PIECE]))

    def digest(self) -> bytes:
        """The digest of the body fed so far (the hasher can be fed on)."""
        end = self._hash.copy()
        if self._held:  # not ending with a line end: kept whole, and a CRLF added
            _hash_line_ends(end, self._blank)
            end.update(self._held + b"\r\n")
        elif self._hashed or not self.relaxed:  # the empty lines at the end are one CRLF
            end.update(b"\r\n")
        return end.digest()

    def _piece(self, buffer: bytes) -> None:
        # The tail: after the last byte that is content whatever comes next. A CR in it that
        # is followed by something other than LF is such a byte.
        cut = len(buffer.rstrip(b" \t\r\n" if self.relaxed else b"\r\n"))
        for lone in _LONE_CR.finditer(buffer, cut):
            cut = lone.end()
        if cut:
            _hash_line_ends(self._hash, self._blank)
            self._blank = 0
            self._hash.update(self._canonical(buffer[:cut]))
            self._hashed = True
        tail = buffer[cut:]  # line ends and WSP; a CR in it is followed by LF or ends it
        line_ends = tail.count(b"\n")
        self._blank += line_ends
        after = tail[tail.rfind(b"\n") + 1 :] if line_ends else tail
        self._held = (b" " if after.strip(b"\r") else b"") + (b"\r" if after[-1:] == b"\r" else b"")

    def _canonical(self, content: bytes) -> bytes:
        if content.count(b"\n") != content.count(b"\r\n"):
            content = _BARE_LF.sub(b"\r\n", content)
        if self.relaxed:
            if b" \r\n" in content or b"\t\r\n" in content:
                content = _WSP_BEFORE_CRLF.sub(b"\r\n", content)
            if b"\t" in content or b"  " in content:
                content = _WSP.sub(b" ", content)
        return content


def _hash_line_ends(hash: hashlib._Hash, count: int) -> None:
    while count:
        batch = min(count, len(_CRLFS) // 2)
        hash.update(_CRLFS[: batch * 2])
        count -= batch


@dataclass(frozen=True)
class BodyDigests:
    """The sha256 of a body in both canonical forms, by canonicalization name."""

    simple: bytes
    relaxed: bytes

    def __getitem__(self, canonicalization: bytes) -> bytes:
        return {b"simple": self.simple, b"relaxed": self.relaxed}[canonicalization]


def body_digests(body: Octets | memoryview) -> BodyDigests:
    """Both digests of ``body`` (the octets after the empty line), in one pass."""
    simple, relaxed = BodyHash(relaxed=False), BodyHash(relaxed=True)
    view = memoryview(body)
    for start in range(0, len(view), PIECE):
        piece = view[start : start + PIECE]
        simple.update(piece)
        relaxed.update(piece)
    return BodyDigests(simple.digest(), relaxed.digest())
