"""aiosmtpd's SMTP protocol, adjusted for an MX: enhanced status codes on every reply,
PIPELINING and ENHANCEDSTATUSCODES advertised, no AUTH (this is not a submission server)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from typing import Any

from aiosmtpd.smtp import SMTP

from app.smtp.replies import (
    S421_SHUTTING_DOWN,
    S421_TOO_MANY_CONNECTIONS,
    S421_TOO_MANY_FROM_YOU,
    S501_BAD_ADDRESS,
    S501_BAD_HELO,
    S501_BAD_SENDER,
    S503_AUTH_NOT_ENABLED,
)

# RFC 3463 codes for aiosmtpd's own replies, which mostly come without one.
DEFAULT_ENHANCED = {
    "221": "2.0.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.5.0",
    "421": "4.3.0",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",  # RFC 3207 4: TLS not available
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(\s|$)")
# RFC 2034 3: the greeting and the answers to HELO/EHLO carry no enhanced code.
PLAIN_CODES = ("220", "354", "334")
# Control characters, and the lone surrogates that stand for bytes that are not UTF-8
# (aiosmtpd decodes arguments with surrogateescape): never in a name we keep or echo.
UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
BUILTIN_AUTH = ("LOGIN", "PLAIN")


def with_enhanced_code(reply: str) -> str:
    code = reply[:3]
    if code in PLAIN_CODES or HAS_ENHANCED.match(reply) or code not in DEFAULT_ENHANCED:
        return reply
    separator, text = reply[3:4] or " ", reply[4:]
    return f"{code}{separator}{DEFAULT_ENHANCED[code]} {text}".rstrip()


def unbalanced_path(path: str, rest: str) -> bool:
    """Whether the path around a parsed address has a missing or stray angle bracket.

    RFC 5321 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">". Python's parser (which aiosmtpd
    uses) forgives "<user@ours" and leaves a stray ">" to the parameters; Postfix answers
    both with 501 5.1.3, and so do we (a bare address without brackets stays allowed, as
    Postfix's strict_rfc821_envelopes = no does).
    """
    text = path.strip()
    if rest.lstrip().startswith(("<", ">")):
        return True
    consumed = text[: len(text) - len(rest)].rstrip()
    return text.startswith("<") != consumed.endswith(">")


class Gate:
    """Who may open a session: none while draining for shutdown (421 4.3.2), and no more
    than ``max_per_ip`` at once from one address, ``max_total`` in all (421 4.7.0), like
    Postfix's anvil. Sessions already open finish what they are doing."""

    def __init__(self, *, max_per_ip: int | None = None, max_total: int | None = None) -> None:
        self.draining = False
        self.max_per_ip = max_per_ip
        self.max_total = max_total
        self.active = 0
        self._per_ip: Counter[str] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self, ip: str) -> str | None:
        """None, and the session counted; or the reply that turns it away."""
        if self.draining:
            return S421_SHUTTING_DOWN
        if self.max_total is not None and self.active >= self.max_total:
            return S421_TOO_MANY_CONNECTIONS
        if self.max_per_ip is not None and self._per_ip[ip] >= self.max_per_ip:
            return S421_TOO_MANY_FROM_YOU
        self.active += 1
        self._per_ip[ip] += 1
        self._idle.clear()
        return None

    def closed(self, ip: str) -> None:
        self.active -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no session is open."""
        await self._idle.wait()


class MailrouteSMTP(SMTP):
    # RFC 5321 4.5.3.1.4: 512 octets with the CRLF, which aiosmtpd counts without.
    command_size_limit = 512 - 2

    def __init__(self, handler: Any, gate: Gate | None = None, **kwargs: Any) -> None:
        super().__init__(handler, auth_exclude_mechanism=BUILTIN_AUTH, **kwargs)
        self._reset_command_size_limits()
        self._greeting_or_hello = False
        self._gate = gate
        self._counted_ip: str | None = None
        self._turned_away = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS on the same session: admit the first call only.
        if self._gate is not None and self._counted_ip is None and not self._turned_away:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
            refusal = self._gate.admit(ip)
            if refusal is not None:
                self._turned_away = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal.encode() + b"\r\n")
                transport.close()
                return
            self._counted_ip = ip
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._turned_away:
            return  # aiosmtpd never saw this connection
        if self._counted_ip is not None and self._gate is not None:
            self._gate.closed(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    async def push(self, status: str) -> None:  # type: ignore[override]
        # Some of aiosmtpd's replies echo the client's argument ("502 Could not VRFY ...").
        status = UNSAFE_TEXT.sub("?", status)
        await super().push(status if self._greeting_or_hello else with_enhanced_code(status))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        address, rest = super()._getaddr(arg)
        if address and rest is not None and unbalanced_path(arg, rest):
            return None, None
        if address and UNSAFE_TEXT.search(address):
            return None, None
        return address, rest

    async def smtp_MAIL(self, arg: str | None) -> None:
        # Postfix's "501 5.1.7" instead of aiosmtpd's "553 malformed address".
        assert self.session is not None
        if self.session.host_name and self._malformed_path(arg, "FROM:"):
            await self.push(S501_BAD_SENDER)
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        # Postfix's "501 5.1.3", once HELO and MAIL (which aiosmtpd checks first) were seen.
        assert self.session is not None and self.envelope is not None
        ready = self.session.host_name and self.envelope.mail_from
        if ready and self._malformed_path(arg, "TO:"):
            await self.push(S501_BAD_ADDRESS)
            return
        await super().smtp_RCPT(arg)

    def _malformed_path(self, arg: str | None, keyword: str) -> bool:
        path = self._strip_command_keyword(keyword, arg) if arg else None
        if not path:
            return False  # aiosmtpd's own "501 Syntax: ..." for these
        address, _rest = self._getaddr(path)
        return address is None

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._hello(super().smtp_EHLO, hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        await self._hello(super().smtp_HELO, hostname)

    async def smtp_AUTH(self, arg: str | None) -> None:
        # aiosmtpd answers "538 Encryption required" before TLS, as if AUTH could follow.
        await self.push(S503_AUTH_NOT_ENABLED)

    def _reset_command_size_limits(self) -> None:
        # aiosmtpd keeps these in one dict shared by every session, and each EHLO adds
        # the SIZE (RFC 1870) and SMTPUTF8 (RFC 6531) allowances to MAIL's limit again:
        # ours are per session and start over at each greeting.
        self.command_size_limits = defaultdict(lambda: self.command_size_limit)

    async def _hello(self, command: Any, hostname: str) -> None:
        if hostname and UNSAFE_TEXT.search(hostname):
            await self.push(S501_BAD_HELO)  # it would reach our Received: line and database
            return
        self._reset_command_size_limits()
        self._greeting_or_hello = bool(hostname)  # "501 Syntax" still gets its code
        try:
            await command(hostname)
        finally:
            self._greeting_or_hello = False
