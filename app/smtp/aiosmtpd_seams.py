"""aiosmtpd's private members that our SMTP session relies on, touched here and nowhere else.

aiosmtpd 1.4 has no public way to stop or move the session timer, to read the message
text off the stream ourselves, or to answer before it closes a connection, all of which
the session limits need (app.smtp.enforcement). SeamedSMTP wraps each private member in a
name of our own; LimitedSMTP (app.smtp.enforcement) subclasses it, MailrouteSMTP
(app.smtp.protocol) subclasses that, and neither spells an underscored aiosmtpd name.
tests/smtp/test_aiosmtpd_seams.py checks every member in PRIVATE against the installed
aiosmtpd (kind and signature) and names the one an upgrade removed or changed; the pin in
pyproject.toml (>=1.4.5,<1.5) is the other half of the fence.

Beyond these names, app.smtp.protocol replaces aiosmtpd's smtp_DATA whole (to read the
text in blocks, app.smtp.data), keeping its checks and its replies (app.smtp.replies
S354_END_DATA, S503_NEED_RCPT, S501_SYNTAX_DATA, S250_OK).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP

# What we rely on, and why: one line each.
PRIVATE = {
    "_call_handler_hook": "overridden: every handler hook passes here (DATA stops the timer)",
    "_getaddr": "overridden: MAIL's and RCPT's path parser (fast path, strict brackets)",
    "_timeout_cb": "overridden: the timer's callback, so that a timeout is answered with 421",
    "_reset_timeout": "restarts the session timer; DATA moves it with every chunk read",
    "_strip_command_keyword": "cuts FROM:/TO: off as MAIL and RCPT do, to check the path",
    "_set_post_data_state": "ends the transaction after our own DATA (a new envelope)",
    "_timeout_handle": "the session timer, stopped while the handler stores the message",
    "_handle_client": "overridden: the session (greeting, then commands), refused at connect",
    "_handler_coroutine": "the session's command loop, cancelled when we hang up",
    "_original_transport": "under STARTTLS, the TCP transport: aborted if a client stops reading",
    "_reader": "the stream our DATA reads the message text from",
    "_writer": "closed when the connection goes during DATA",
}


class SeamedSMTP(SMTP):
    """aiosmtpd's SMTP with its private members under names of our own (see PRIVATE).

    The hooks aiosmtpd calls (_handle_client, _call_handler_hook, _getaddr, _timeout_cb)
    forward to handle_client, call_handler, parse_path and timed_out, which a subclass
    overrides and which, here, do what aiosmtpd does."""

    # --- hooks aiosmtpd calls --------------------------------------------------------

    async def _handle_client(self) -> None:
        await self.handle_client()

    async def handle_client(self) -> None:
        """The session, from the greeting on: aiosmtpd's command loop."""
        await super()._handle_client()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        return await self.call_handler(command, *args)

    async def call_handler(self, command: str, *args: Any) -> Any:
        """The handler's hook for ``command``; aiosmtpd's MISSING when it has none."""
        return await super()._call_handler_hook(command, *args)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return self.parse_path(arg)

    def parse_path(self, arg: str) -> tuple[str | None, str | None]:
        """The address in a MAIL or RCPT path and the parameters after it; (None, None)
        when it does not parse."""
        return super()._getaddr(arg)

    def _timeout_cb(self) -> None:
        self.timed_out()

    def timed_out(self) -> None:
        """The session timer ran out: aiosmtpd closes the connection."""
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    # --- what aiosmtpd keeps ---------------------------------------------------------

    def strip_keyword(self, keyword: str, arg: str) -> str | None:
        """``arg`` after ``keyword`` ("FROM:", "TO:"), or None when it does not start so."""
        return self._strip_command_keyword(keyword, arg)

    def reset_timer(self, duration: float | None = None) -> None:
        """Restart the session timer: ``duration`` seconds, or the session's timeout."""
        self._reset_timeout(duration)

    def stop_timer(self) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()

    def end_transaction(self) -> None:
        """What aiosmtpd does after DATA: a new envelope, the greeting kept."""
        self._set_post_data_state()  # type: ignore[no-untyped-call]

    def stop_commands(self) -> None:
        """Cancel the loop that reads and runs the client's commands."""
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()

    @property
    def tcp_transport(self) -> asyncio.BaseTransport | None:
        """Under STARTTLS, the TCP connection beneath the TLS transport; else None."""
        return self._original_transport

    @property
    def reader(self) -> asyncio.StreamReader:
        return self._reader

    @property
    def writer(self) -> asyncio.StreamWriter:
        return self._writer
