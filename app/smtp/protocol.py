"""aiosmtpd's SMTP protocol, adjusted for an MX: enhanced status codes on every reply,
PIPELINING and ENHANCEDSTATUSCODES advertised, no AUTH (this is not a submission server)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiosmtpd.smtp import SMTP

from app.smtp.replies import S421_SHUTTING_DOWN

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
BUILTIN_AUTH = ("LOGIN", "PLAIN")


def with_enhanced_code(reply: str) -> str:
    code = reply[:3]
    if code in PLAIN_CODES or HAS_ENHANCED.match(reply) or code not in DEFAULT_ENHANCED:
        return reply
    separator, text = reply[3:4] or " ", reply[4:]
    return f"{code}{separator}{DEFAULT_ENHANCED[code]} {text}".rstrip()


class Drain:
    """Graceful shutdown: once draining, new sessions are answered 421 4.3.2 and closed,
    while the sessions already open finish what they are doing."""

    def __init__(self) -> None:
        self.draining = False
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def opened(self) -> None:
        self.active += 1
        self._idle.clear()

    def closed(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no session is open."""
        await self._idle.wait()


class MailrouteSMTP(SMTP):
    def __init__(self, handler: Any, drain: Drain | None = None, **kwargs: Any) -> None:
        super().__init__(handler, auth_exclude_mechanism=BUILTIN_AUTH, **kwargs)
        self._greeting_or_hello = False
        self._drain = drain
        self._counted = False
        self._turned_away = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS on the same session: count the first call only.
        if self._drain is not None and not self._counted and not self._turned_away:
            if self._drain.draining:
                self._turned_away = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(S421_SHUTTING_DOWN.encode() + b"\r\n")
                transport.close()
                return
            self._drain.opened()
            self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._turned_away:
            return  # aiosmtpd never saw this connection
        if self._counted and self._drain is not None:
            self._counted = False
            self._drain.closed()
        super().connection_lost(error)

    async def push(self, status: str) -> None:  # type: ignore[override]
        await super().push(status if self._greeting_or_hello else with_enhanced_code(status))

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._hello(super().smtp_EHLO, hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        await self._hello(super().smtp_HELO, hostname)

    async def _hello(self, command: Any, hostname: str) -> None:
        self._greeting_or_hello = bool(hostname)  # "501 Syntax" still gets its code
        try:
            await command(hostname)
        finally:
            self._greeting_or_hello = False
