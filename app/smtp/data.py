"""The message text after DATA, decoded as it streams in (RFC 5321 4.5.2), block by block.

aiosmtpd keeps every line as its own object, joins them, and the handler then prepends its
trace field: four copies of a 25 MiB message and a Python loop per line. Here the text goes
into one buffer that starts with our trace field, many lines at a time, and the checks that
refuse a message (RFC 5321 2.3.8 bare CR or LF, 4.5.3.1.6 line length, the size limit) run
on each block as it passes. Once a message is refused its text is no longer kept.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, runtime_checkable

from app.message import MAX_LINE_OCTETS, has_bare_newline, has_long_line

END = b".\r\n"  # the end of data, alone on its line


@runtime_checkable
class TextStarter(Protocol):
    """A handler that makes the start of the text when DATA begins (app.smtp.handler's
    InboundHandler: our Received: field, RFC 5321 4.4). app.smtp.protocol starts the
    message's buffer with it, so the text is never copied to put it in front; a handler
    without begin_data gets the text alone."""

    def begin_data(self, session: Any, envelope: Any) -> bytes: ...


class Refusal(enum.Enum):
    """Why the text cannot be taken; the first found is answered."""

    TOO_MUCH = "too much"  # over the size limit: 552 5.3.4
    BARE_NEWLINE = "bare newline"  # a CR or LF not in a CRLF: 550 5.5.2
    LINE_TOO_LONG = "line too long"  # 500 5.5.2
    NO_ROOM = "no room"  # the server's memory budget is spent: 452 4.3.1


class MessageText:
    """Feed it the bytes after the 354 as they come; it says where the end of data was.

    ``content`` is ``prefix`` and then the text, the dots added for transparency removed.
    Lines are only taken whole: a line's start is what a dot and the end of data are
    looked for at, so the part after the last CRLF waits for the next block.
    """

    def __init__(self, prefix: bytes = b"", size_limit: int | None = None) -> None:
        self.content = bytearray(prefix)
        self.size = 0  # octets received, as sent (RFC 1870 counts these)
        self.done = False
        self._size_limit = size_limit
        self.refusal: Refusal | None = None
        self._partial = b""  # a line not yet ended
        self._mid_line = False  # _partial continues an over-long line already dropped

    def feed(self, block: bytes) -> int:
        """Take ``block``; return how many of its octets belong to the message, the end of
        data included: all of them, unless the end of data came inside."""
        if self.done:
            return 0
        text = self._partial + block if self._partial else block
        end = self._end_of_data(text)
        if end is not None:
            self.done = True
            lines, self._partial = text[:end], b""
            used = end + len(END) - (len(text) - len(block))
        else:
            last = text.rfind(b"\r\n")
            cut = 0 if last == -1 else last + 2
            lines, self._partial = text[:cut], text[cut:]
            used = len(block)
        self._take(lines)
        if len(self._partial) > MAX_LINE_OCTETS:
            self._drop_long_partial()
        return used

    def _end_of_data(self, text: bytes) -> int | None:
        """Where the lines before the end of data stop in ``text``, which starts a line
        unless _mid_line."""
        if not self._mid_line and text.startswith(END):
            return 0
        found = text.find(b"\r\n" + END)
        return None if found == -1 else found + 2

    def _take(self, lines: bytes) -> None:
        """Whole lines (each ending in CRLF) that start at a line start, unless _mid_line."""
        if not lines:
            return
        self._count(len(lines))
        if self._mid_line:
            # The rest of a line already refused as too long: not a line start.
            self._mid_line = False
            self._check(lines)
            return
        if lines.startswith(b"."):
            lines = lines[1:]
        if b"\r\n." in lines:
            lines = lines.replace(b"\r\n.", b"\r\n")
        self._check(lines)
        if self.refusal is None:
            self.content += lines

    def _check(self, lines: bytes) -> None:
        if has_bare_newline(lines):
            self._refuse(Refusal.BARE_NEWLINE)
        if has_long_line(lines):
            self._refuse(Refusal.LINE_TOO_LONG)

    def _drop_long_partial(self) -> None:
        """A line with no end in sight is too long whatever follows: refuse, and keep only
        its last octet (a CR whose LF may come next) to find where it ends."""
        partial = self._partial
        if has_bare_newline(partial[:-1]):
            self._refuse(Refusal.BARE_NEWLINE)
        self._refuse(Refusal.LINE_TOO_LONG)
        self._count(len(partial) - 1)
        self._partial = partial[-1:]
        self._mid_line = True

    def _count(self, octets: int) -> None:
        self.size += octets
        if self._size_limit is not None and self.size > self._size_limit:
            self._refuse(Refusal.TOO_MUCH)

    def refuse(self, refusal: Refusal) -> None:
        """Refuse the text for a reason found outside it (Refusal.NO_ROOM); what is left
        of it is still read to its end, and not kept."""
        self._refuse(refusal)

    def _refuse(self, refusal: Refusal) -> None:
        if self.refusal is None:
            self.refusal = refusal
            self.content = bytearray()  # nothing of it will be stored
