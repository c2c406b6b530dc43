"""Pure functions on RFC 5322 message bytes, as they travel: never decoded, never rewritten."""

from __future__ import annotations

import email.utils
import re
from datetime import datetime
from email.utils import format_datetime

Octets = bytes | bytearray  # a message as stored: the SMTP server builds it in a bytearray

MAX_HEADER_SCAN = 1024 * 1024  # a header section larger than this is not looked into further
_FIELD_START = re.compile(rb"^(?P<name>[!-9;-~]+)[ \t]*:", re.MULTILINE)
# A From: field and its continuation lines (RFC 5322 2.2.3), unfolded by the caller.
_FROM_FIELD = re.compile(
    rb"^from[ \t]*:(?P<value>[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE
)
_UNSAFE_IN_RECEIVED = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
MAX_LINE_OCTETS = 1000  # RFC 5321 4.5.3.1.6 and RFC 5322 2.1.1, the CRLF included
# Anchored at line starts: unanchored, the search retries inside every long line, which
# is quadratic in the line's length (bench/large.py sends messages where that shows).
_LONG_LINE = re.compile(rb"^[^\r\n]{%d}" % (MAX_LINE_OCTETS - 1), re.MULTILINE)


# C0 and C1 controls (CR, LF, NUL, NEL, ...) and DEL, and Unicode's line and paragraph
# separators: characters some reader of a header field takes as the end of a line. These
# are exactly Unicode's categories Cc, Zl and Zp.
LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def breaks_lines(text: str) -> bool:
    """Whether ``text`` has a character that could end or fold a header line somewhere."""
    return LINE_BREAKING.search(text) is not None


def header_safe(text: str, replacement: str = "?") -> str:
    """``text`` with every line-breaking character replaced, safe inside a header field."""
    return LINE_BREAKING.sub(replacement, text)


def header_section(content: Octets) -> bytes:
    """The header fields, up to (not including) the empty line that ends them."""
    head = bytes(content[:MAX_HEADER_SCAN])
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end != -1:
            return head[: end + len(separator) // 2]
    return head


def field_names(content: Octets) -> list[str]:
    """Names of the header fields in order, lower case (continuation lines skipped)."""
    return [
        m.group("name").decode("ascii").lower()
        for m in _FIELD_START.finditer(header_section(content))
    ]


def has_bare_newline(content: Octets) -> bool:
    """A CR not followed by LF, or an LF not preceded by CR (RFC 5321 2.3.8)."""
    # Counted, not searched: as many CRs as LFs as CRLFs means none stands alone, and
    # bytes.count, a loop in C, outruns a regular expression on this path of every message
    # (bench/forwarding.py).
    crlf = content.count(b"\r\n")
    return content.count(b"\r") != crlf or content.count(b"\n") != crlf


def has_long_line(content: Octets) -> bool:
    """A line longer than MAX_LINE_OCTETS with its CRLF."""
    # Segments between LFs hold every line: when none is that long (nearly always), the
    # slower regular expression need not look.
    if max(map(len, content.split(b"\n"))) < MAX_LINE_OCTETS - 1:
        return False
    return _LONG_LINE.search(content) is not None


def count_received(content: Octets) -> int:
    return field_names(content).count("received")


def message_id(content: Octets) -> str | None:
    """The Message-ID field's value, unfolded, or None."""
    match = re.search(
        rb"^message-id[ \t]*:(?P<value>.*(?:\r?\n[ \t].*)*)",
        header_section(content),
        re.IGNORECASE | re.MULTILINE,
    )
    if match is None:
        return None
    value = b" ".join(match.group("value").split()).decode("utf-8", "replace")
    return header_safe(value)[:998] or None  # a NUL is the client's, not a storage error


def safe_helo(helo: str | None) -> str | None:
    """The EHLO name as we record it: reduced to safe characters, at most 255 (a domain
    name's limit, and the column's), so no client's choice can fail storage or a header."""
    return _UNSAFE_IN_RECEIVED.sub("?", helo)[:255] if helo else None


def received_header(
    *,
    helo: str | None,
    client_ip: str | None,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    now: datetime,
) -> bytes:
    """Our trace field (RFC 5321 4.4). Client-supplied text is reduced to safe characters,
    so nothing it sends can end the field or add another."""
    helo_text = safe_helo(helo) or "unknown"
    ip_text = _UNSAFE_IN_RECEIVED.sub("?", client_ip or "unknown")[:64]  # IPv6: 45 at most
    lines = [
        f"Received: from {helo_text} ([{ip_text}])",
        f"\tby {hostname} (mailroute) with {protocol} id {queue_id}",
    ]
    if recipient is not None:
        safe = header_safe(_UNSAFE_RECIPIENT.sub("?", recipient))[:MAX_RECIPIENT_IN_TRACE]
        lines.append(f"\tfor <{safe}>")
    lines[-1] += ";"
    lines.append(f"\t{format_datetime(now)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


_UNSAFE_RECIPIENT = re.compile(r"[\x00-\x20<>\x7f]")
MAX_RECIPIENT_IN_TRACE = 320  # 64 + @ + 255 (RFC 5321 4.5.3.1): the line stays short


def author_domains(content: Octets) -> list[str]:
    """The domains of the From: field's addresses (RFC 5322 3.6.2), lower case, one per
    address of every From: field: DMARC (RFC 7489 6.6.1) needs exactly one."""
    values = [
        match.group("value").decode("utf-8", "replace").replace("\r\n", "").replace("\n", "")
        for match in _FROM_FIELD.finditer(header_section(content))
    ]
    return [
        address.rpartition("@")[2].strip().rstrip(".").lower()
        for _name, address in email.utils.getaddresses(values)
        if address
    ]
