"""What a library says about a hostile message, made fit for a log line or a header comment.

pyspf and dkimpy put remote text into their messages: an SPF exp= explanation, a b= value
that is not base64. Before one of ours carries it, it becomes one line of printable ASCII
(no CR or LF to end a header field early) and is cut to a bounded length.
"""

from __future__ import annotations

import re

MAX_REASON = 200

_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]+")
_SPACES = re.compile(r" {2,}")


def reason(text: str, limit: int = MAX_REASON) -> str:
    """``text`` on one line of printable ASCII, at most ``limit`` characters."""
    flat = _SPACES.sub(" ", _NOT_PRINTABLE.sub(" ", text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."
