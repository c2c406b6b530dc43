"""Delivery status notifications (RFC 3464): a multipart/report to the original sender.

The report names the address the sender used (the alias), never the inbox it forwards
to: a bounce must not reveal where a disposable address leads.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import textwrap
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime
from typing import TypeVar

from app import message as message_bytes
from app.message import header_safe

_LINE_BREAKS = re.compile(r"[\r\n\t]+")
# A run of the characters an IP address is written with, matched only from the run's
# start (the look-behind) and taken whole: each character is looked at a bounded number of
# times, so the pattern is linear in the reply's length (the old one, with two unbounded
# runs around "::", backtracked quadratically on a long hex-and-colon line). Whether a run
# is an address is then decided by the ipaddress module, not by the pattern.
_ADDRESS_LIKE = re.compile(
    r"(?:(?<=IPv6:)|(?<![0-9a-z:.]))[0-9a-f:.]{2,}",  # RFC 5321 4.1.3: [IPv6:...] literals
    re.IGNORECASE,
)
_PARTIAL_ESCAPE = re.compile(r"\\x\{[0-9A-F]*$")
# Status fields are lines of one header section (RFC 5322 2.1.1: at most 998 octets).
MAX_DIAGNOSTIC = 900
# The original's header section quoted in the text/rfc822-headers part (RFC 3462 / 6522):
# enough for any real message's trace, never a megabyte of fields a forger chose to send
# back at whoever's address they put in MAIL FROM.
MAX_QUOTED_HEADER = 64 * 1024
HIDDEN_DOMAIN = "the destination domain"
HIDDEN_ADDRESS = "[address hidden]"
# The email package builds the MIME structure; the header fields it is given are written
# verbatim (set_raw, no folding: every value is one line, header_safe), never parsed
# by its header classes, which decode RFC 2047 encoded words: a remote's reply holding
# "=?utf-8?q?=0D=0ABcc:...?=" would come out as a field of its own (Python before
# 3.11.10 and 3.12.5 writes the CRLF as it is).
POLICY = policy.SMTPUTF8.clone(max_line_length=None)
_M = TypeVar("_M", bound=Message)


@dataclass(frozen=True, slots=True)
class Failure:
    original_recipient: str  # the alias the sender wrote to
    destination: str  # where we forwarded it; hidden from the report
    status: str  # RFC 3463, e.g. "5.1.1"
    diagnostic: str  # the remote's reply, or ours
    action: str = "failed"


def build(
    *,
    hostname: str,
    sender: str,
    original: bytes,
    arrival: datetime,
    failures: list[Failure],
    now: datetime,
) -> tuple[bytes, str]:
    """The DSN's bytes and its Message-ID, ready to queue from the null sender <>."""
    boundary = f"mailroute-{secrets.token_hex(12)}"
    message_id = f"<{secrets.token_hex(16)}@{hostname}>"
    report = _with_fields(
        EmailMessage(policy=POLICY),
        ("From", f"Mail Delivery System <MAILER-DAEMON@{hostname}>"),
        ("To", f"<{header_safe(sender)}>"),
        ("Subject", "Undelivered Mail Returned to Sender"),
        ("Date", format_datetime(now)),
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-replied"),  # RFC 3834 5.1
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/report; report-type=delivery-status; boundary="{boundary}"'),
    )
    report.set_payload(
        [
            _readable_part(hostname, failures),
            _status_part(hostname, arrival, failures, now),
            _headers_part(original),
        ]
    )
    return report.as_bytes(), message_id


def _readable_part(hostname: str, failures: list[Failure]) -> MIMEPart:
    """RFC 3462 (6522) 2: first, the explanation for a human, in UTF-8."""
    recipients = ", ".join(f"<{header_safe(f.original_recipient)}>" for f in failures)
    text = [
        f"This is the mail system at {hostname}.",
        "",
        *_wrap(f"Your message could not be delivered to {recipients}."),
        "",
        *(line for f in failures for line in _explained(f)),
    ]
    part = MIMEPart(policy=POLICY)
    part.set_content("\n".join(text) + "\n", subtype="plain", charset="utf-8", cte="8bit")
    return part


def _status_part(
    hostname: str, arrival: datetime, failures: list[Failure], now: datetime
) -> MIMEPart:
    """RFC 3464 2: the per-message fields, then one group of fields per recipient."""
    per_message = _with_fields(
        Message(policy=POLICY),
        ("Reporting-MTA", f"dns; {hostname}"),
        ("Arrival-Date", format_datetime(arrival)),
    )
    per_recipient = [
        _with_fields(
            Message(policy=POLICY),
            ("Original-Recipient", _address_field(f.original_recipient)),
            ("Final-Recipient", _address_field(f.original_recipient)),
            ("Action", f.action),
            ("Status", f.status),
            ("Diagnostic-Code", f"smtp; {_status_text(_hide(f.diagnostic, f))}"),
            ("Last-Attempt-Date", format_datetime(now)),
        )
        for f in failures
    ]
    part = _with_fields(MIMEPart(policy=POLICY), ("Content-Type", "message/delivery-status"))
    part.set_payload([per_message, *per_recipient])
    return part


def _headers_part(original: bytes) -> MIMEPart:
    """RFC 3462 (6522) 3: the original's header section (quoted_header), its octets
    written as they came, UTF-8 or not."""
    part = _with_fields(MIMEPart(policy=POLICY), ("Content-Type", "text/rfc822-headers"))
    part.set_payload(quoted_header(original).decode("ascii", "surrogateescape"))
    return part


def _with_fields(message: _M, *fields: tuple[str, str]) -> _M:
    """``message`` with ``fields`` added in order and written verbatim (see POLICY)."""
    for name, value in fields:
        message.set_raw(name, value)
    return message


def _hide(diagnostic: str, failure: Failure) -> str:
    text = hide_destination(diagnostic, failure.destination, failure.original_recipient)
    return header_safe(text)


def _explained(failure: Failure) -> list[str]:
    # The remote's reply, wrapped: it may be long, and in UTF-8 up to 4 octets a character.
    wrapped = _wrap(_hide(failure.diagnostic, failure))
    return [f"<{header_safe(failure.original_recipient)}>:", *(f"    {w}" for w in wrapped), ""]


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, 72, break_long_words=True, break_on_hyphens=False)


def _address_field(address: str) -> str:
    # RFC 6533 3: an internationalized address is of type utf-8, its non-ASCII escaped.
    return f"{'rfc822' if address.isascii() else 'utf-8'}; {_status_text(address)}"


def _status_text(text: str) -> str:
    """A field value for the message/delivery-status part, whose fields are ASCII (RFC 3464
    2.1.2): other characters written as RFC 6533 3's \\x{HHHH}, and the line kept short."""
    escaped = "".join(c if c.isascii() else f"\\x{{{ord(c):04X}}}" for c in header_safe(text))
    if len(escaped) <= MAX_DIAGNOSTIC:
        return escaped
    return _PARTIAL_ESCAPE.sub("", escaped[:MAX_DIAGNOSTIC])


def hide_destination(text: str, destination: str, alias: str) -> str:
    """One line, with the forwarding destination replaced by the alias, its domain and any
    IP address hidden: a bounce must not reveal where an alias leads."""
    text = _LINE_BREAKS.sub(" ", text).strip()
    if not destination:
        return text
    text = re.sub(re.escape(destination), alias, text, flags=re.IGNORECASE)
    domain = destination.rpartition("@")[2]
    if domain:
        text = re.sub(rf"\b{re.escape(domain)}\b", HIDDEN_DOMAIN, text, flags=re.IGNORECASE)
    return _ADDRESS_LIKE.sub(_hidden_address, text)


def _hidden_address(match: re.Match[str]) -> str:
    """The IPv4 or IPv6 address in a run hidden, what follows it in the run kept (a
    sentence's full stop, a ":25" port); a run with no address in it
    (a status code, a time of day) left as it was. A handful of parses per run: linear."""
    run = match.group()
    for start, end in _address_spans(run):
        try:
            ipaddress.ip_address(run[start:end])
        except ValueError:
            continue
        return run[:start] + HIDDEN_ADDRESS + run[end:]
    return run


def _address_spans(run: str) -> list[tuple[int, int]]:
    """Where in ``run`` an address may be: the whole run, less a trailing full stop or
    colon, or up to a first colon (``192.0.2.1:25``)."""
    spans = [(0, len(run)), (0, len(run.rstrip("."))), (0, len(run.rstrip(".:")))]
    first_colon = run.find(":")
    if first_colon > 0:
        spans.append((0, first_colon))
    return spans


def quoted_header(original: bytes, limit: int = MAX_QUOTED_HEADER) -> bytes:
    """The original's header section with CRLF line ends, cut after the last whole field
    that fits in ``limit`` octets (a line starting with space or tab continues the field
    before it, RFC 5322 2.2.3, so a cut is made only before a line that starts a field)."""
    head = _crlf(message_bytes.header_section(original))
    if len(head) <= limit:
        return head
    cut = head.rfind(b"\r\n", 0, limit - 1)
    while cut != -1 and head[cut + 2 : cut + 3] in (b" ", b"\t"):
        cut = head.rfind(b"\r\n", 0, cut)
    return head[: cut + 2] if cut != -1 else b""


def _crlf(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"
