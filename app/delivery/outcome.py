"""What one delivery attempt came to, and the one place that decides permanent vs temporary.

RFC 5321 4.2.1: 2yz is success, 4yz a transient failure to retry, 5yz a permanent one.
Anything that is not a reply (refused or dropped connection, timeout, DNS SERVFAIL) is
transient: the destination may be back later. Only an answer can be final, or what we
find out ourselves that no retry will change (LOCAL_FAILURES: a message that needs
SMTPUTF8, for a server without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets. A remote may send far more (a
# line of 8 KiB, or 32 KiB of continuation lines, as aiosmtplib lets through); what we keep,
# store, echo and run patterns over is cut here, where every reply enters.
MAX_REPLY = 512


class Result(StrEnum):
    DELIVERED = "delivered"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    reply: str  # the remote's reply, or our description of what went wrong
    remote: str | None = None  # the host that answered (or failed to)
    status: str | None = None  # RFC 3463 status for a DSN, e.g. "5.1.1"

    @property
    def delivered(self) -> bool:
        return self.result is Result.DELIVERED

    @property
    def permanent(self) -> bool:
        return self.result is Result.PERMANENT


class Failure(StrEnum):
    """What the relay finds itself, before or instead of the destination's answer."""

    NO_SMTPUTF8 = "no smtputf8"
    TLS_FAILED = "tls failed"
    TLS_NOT_OFFERED = "tls not offered"
    CLEAR_CREDENTIALS = "clear credentials"
    LOGIN_REFUSED = "login refused"


# Failure: (result, RFC 3463 status, what is said; {detail} filled in by the caller).
LOCAL_FAILURES: dict[Failure, tuple[Result, str, str]] = {
    # RFC 6531 3.2: a message that needs SMTPUTF8 cannot go to a server without it.
    Failure.NO_SMTPUTF8: (
        Result.PERMANENT,
        "5.6.7",
        "550 5.6.7 the destination does not take internationalised mail (SMTPUTF8)",
    ),
    # RFC 3463 X.7.5 (cryptographic failure); TLS that had to be (policy "require", a
    # checked certificate, credentials to send) may work later: never sent in clear.
    Failure.TLS_FAILED: (Result.TEMPORARY, "4.7.5", "TLS handshake failed: {detail}"),
    Failure.TLS_NOT_OFFERED: (
        Result.TEMPORARY,
        "4.7.5",
        "TLS required but STARTTLS not offered",
    ),
    # RFC 5248's X.7.10, "encryption needed" (RFC 4954 4 and 14: PLAIN and LOGIN send the
    # password as it is): the operator can enable TLS on the smarthost (or fix
    # MAILROUTE_SMARTHOST_TLS); until then the mail waits.
    Failure.CLEAR_CREDENTIALS: (
        Result.TEMPORARY,
        "4.7.10",
        "credentials are sent only over TLS, and this connection is not encrypted",
    ),
    # RFC 4954 6 (X.7.8, credentials invalid). Our credentials, our fault: retry (the
    # operator may fix them) rather than bounce the sender's mail, like Postfix's
    # smtp_sasl_auth_soft_bounce.
    Failure.LOGIN_REFUSED: (Result.TEMPORARY, "4.7.8", "{detail}"),
}


def from_failure(failure: Failure, remote: str | None, detail: str = "") -> Outcome:
    """The outcome of a failure the relay found itself (``detail``: the exception's or
    the server's words, where the text has a place for them)."""
    result, status, text = LOCAL_FAILURES[failure]
    return Outcome(result, bounded(text.format(detail=detail)), remote, status)


def bounded(text: str, limit: int = MAX_REPLY) -> str:
    """``text`` cut to ``limit`` characters, before anything else looks at it."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_reply(code: int, text: str, remote: str | None) -> Outcome:
    text = bounded(text, MAX_REPLY - len(f"{code} "))
    reply = f"{code} {text}".strip()
    status = _enhanced_status(text) or f"{str(code)[0]}.0.0"
    if 200 <= code < 300:
        return Outcome(Result.DELIVERED, reply, remote, status)
    if 500 <= code < 600:
        return Outcome(Result.PERMANENT, reply, remote, status)
    return Outcome(Result.TEMPORARY, reply, remote, status if code >= 400 else "4.0.0")


def from_exception(exc: BaseException, remote: str | None) -> Outcome:
    """Translate aiosmtplib's errors (and socket errors) at the boundary."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return from_reply(first.code, first.message, remote)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        return from_reply(exc.code, exc.message, remote)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # RFC 6531 3.2: an SMTPUTF8 message to a server without it cannot be delivered.
        return Outcome(Result.PERMANENT, bounded(f"550 5.6.7 {exc}"), remote, "5.6.7")
    if isinstance(exc, TimeoutError):
        return Outcome(Result.TEMPORARY, bounded(f"timed out: {exc}"), remote, "4.4.2")
    return Outcome(Result.TEMPORARY, bounded(f"{type(exc).__name__}: {exc}"), remote, "4.4.1")


def _enhanced_status(text: str) -> str | None:
    head = text.split(" ", 1)[0]
    parts = head.split(".")
    if len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts):
        return head
    return None
