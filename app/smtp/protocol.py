"""aiosmtpd's SMTP protocol, adjusted for an MX: enhanced status codes on every reply,
PIPELINING and ENHANCEDSTATUSCODES advertised, no AUTH (this is not a submission server).

The dialogue is here; the limits it runs under are enforced in app.smtp.enforcement, the
MAIL and RCPT paths parsed in app.smtp.paths, the message text read in app.smtp.data.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, ClassVar

from aiosmtpd.smtp import MISSING, syntax

from app.smtp import replies
from app.smtp.data import END, MessageText, Refusal, TextStarter
from app.smtp.enforcement import LimitedSMTP
from app.smtp.enhanced_codes import with_enhanced_code
from app.smtp.limits import DATA_RESERVE, DEFAULT_LIMITS, Gate, MemoryBudget, SessionLimits
from app.smtp.paths import UNSAFE_TEXT, parse_path

log = logging.getLogger(__name__)

BUILTIN_AUTH = ("LOGIN", "PLAIN")
TEXT_REFUSALS = {
    Refusal.TOO_MUCH: replies.S552_TOO_MUCH_DATA,
    Refusal.BARE_NEWLINE: replies.S550_BARE_NEWLINE,
    Refusal.LINE_TOO_LONG: replies.S500_LINE_TOO_LONG,
    Refusal.NO_ROOM: replies.S452_NO_ROOM,
}


class MailrouteSMTP(LimitedSMTP):
    """One SMTP session. Beyond aiosmtpd and the limits LimitedSMTP enforces: enhanced
    status codes on every reply, no control characters in replies or HELO names, MAIL and
    RCPT paths checked as Postfix checks them, and the message text read in blocks within
    the MemoryBudget that all sessions' message text shares."""

    # RFC 5321 4.5.3.1.4: 512 octets with the CRLF, which aiosmtpd counts without.
    command_size_limit = 512 - 2
    # aiosmtpd finds its command and AUTH methods by introspecting every new session
    # (inspect.getmembers reads each attribute and property), a cost paid per connection
    # that shows in bench/forwarding.py (one message per session). Only those names need
    # be seen; computed once per class.
    _introspected: ClassVar[tuple[str, ...]]

    def __dir__(self) -> list[str]:
        cls = type(self)
        if "_introspected" not in cls.__dict__:  # each class its own: a subclass may add
            cls._introspected = tuple(
                name for name in super().__dir__() if name.startswith(("smtp_", "auth_"))
            )
        return list(cls._introspected)

    def __init__(
        self,
        handler: Any,
        gate: Gate | None = None,
        limits: SessionLimits = DEFAULT_LIMITS,
        budget: MemoryBudget | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, gate, limits, auth_exclude_mechanism=BUILTIN_AUTH, **kwargs)
        self._greeting_or_hello = False
        self._budget = budget if budget is not None else MemoryBudget()
        self._held = 0  # octets of the budget this session holds
        self._reset_command_size_limits()

    # --- replies ---------------------------------------------------------------------

    async def push(self, status: str) -> None:  # type: ignore[override]
        # Some of aiosmtpd's replies echo the client's argument ("502 Could not VRFY ...").
        # Printable ASCII, which nearly every reply is, holds nothing unsafe.
        if not (status.isascii() and status.isprintable()):
            status = UNSAFE_TEXT.sub("?", status)
        await super().push(status if self._greeting_or_hello else with_enhanced_code(status))

    async def smtp_AUTH(self, arg: str) -> None:
        # No @syntax: HELP does not list it, and EHLO never offers it.
        await self.push(replies.S503_NO_AUTH)

    # --- hello -----------------------------------------------------------------------

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        await self._hello(super().smtp_EHLO, hostname)

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        await self._hello(super().smtp_HELO, hostname)

    def _reset_command_size_limits(self) -> None:
        # aiosmtpd keeps these in one dict shared by every session, and each EHLO adds
        # the SIZE (RFC 1870) and SMTPUTF8 (RFC 6531) allowances to MAIL's limit again:
        # ours are per session and start over at each greeting.
        self.command_size_limits = defaultdict(lambda: self.command_size_limit)

    async def _hello(self, command: Any, hostname: str) -> None:
        if hostname and UNSAFE_TEXT.search(hostname):
            await self.push(replies.S501_BAD_HELO)  # it would reach Received: and the database
            return
        self._reset_command_size_limits()
        self._greeting_or_hello = bool(hostname)  # "501 Syntax" still gets its code
        try:
            await command(hostname)
        finally:
            self._greeting_or_hello = False

    # --- the envelope ----------------------------------------------------------------

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str) -> None:
        if await self.over_message_rate():
            return
        # Postfix's "501 5.1.7" instead of aiosmtpd's "553 malformed address".
        assert self.session is not None
        if self.session.host_name and self._malformed_path(arg, "FROM:"):
            await self.push(replies.S501_BAD_SENDER)
            return
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str) -> None:
        # Postfix's "501 5.1.3", once HELO and MAIL (which aiosmtpd checks first) were seen.
        assert self.session is not None and self.envelope is not None
        ready = self.session.host_name and self.envelope.mail_from
        if ready and self._malformed_path(arg, "TO:"):
            await self.push(replies.S501_BAD_ADDRESS)
            return
        if not self.penalized():
            await super().smtp_RCPT(arg)
        self.penalized()  # this recipient may have been the last guess allowed

    def _malformed_path(self, arg: str | None, keyword: str) -> bool:
        path = self.strip_keyword(keyword, arg) if arg else None
        if not path:
            return False  # aiosmtpd's own "501 Syntax: ..." for these
        address, _rest = self.parse_path(path)
        return address is None

    def parse_path(self, arg: str) -> tuple[str | None, str | None]:
        # A local-part limit is aiosmtpd's parser's to check: no fast path then.
        return parse_path(arg, super().parse_path, fast=not self.local_part_limit)

    # --- the message -----------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's checks and replies, then the text read by app.smtp.data rather than
        # line by line (aiosmtpd's decode_data is not supported: we keep bytes).
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push(replies.S503_NEED_RCPT)
            return
        if arg:
            await self.push(replies.S501_SYNTAX_DATA)
            return
        if not self._hold(DATA_RESERVE):
            log.warning("%s: DATA refused: the in-transit memory budget is spent", self.peer_ip())
            await self.push(replies.S452_NO_ROOM)
            return
        try:  # whatever ends the DATA (a reply, a hang-up, a cancellation) gives room back
            prefix = b""
            if isinstance(self.event_handler, TextStarter):
                prefix = self.event_handler.begin_data(self.session, self.envelope)
            await self.push(replies.S354_END_DATA)
            self.start_data_clock()
            text = await self._receive(prefix)
            if text is not None:
                await self._answer(text)
        finally:
            self._budget.resize(self._held, 0)
            self._held = 0
            self.stop_data_clock()

    def _hold(self, octets: int) -> bool:
        """Hold ``octets`` of the memory budget, at least DATA_RESERVE; False, and the hold
        unchanged, when there is not enough room."""
        wanted = max(octets, DATA_RESERVE)
        if not self._budget.resize(self._held, wanted):
            return False
        self._held = wanted
        return True

    async def _receive(self, prefix: bytes) -> MessageText | None:
        """The text up to the end of data, or None when the connection went first."""
        text = MessageText(prefix, self.data_size_limit or None)
        reader = self.reader
        try:
            while not text.done:
                try:
                    block = await reader.readuntil(END)
                except asyncio.LimitOverrunError as exc:
                    # No end of data in the first exc.consumed octets: take those.
                    block = await reader.readexactly(exc.consumed)
                # readuntil stops at the first ".<CRLF>", so a block never runs past
                # the end of data: what the client pipelined next stays in the reader.
                text.feed(block)
                if text.refusal is None and not self._hold(len(text.content)):
                    log.warning("%s: message dropped: the memory budget is spent", self.peer_ip())
                    text.refuse(Refusal.NO_ROOM)
                if text.refusal is not None:
                    self._hold(DATA_RESERVE)  # a refused text is no longer kept
        except asyncio.IncompleteReadError:
            log.info("%s: connection closed during DATA", self.peer_ip())
            return None
        except asyncio.CancelledError:
            log.info("%s: connection lost during DATA", self.peer_ip())
            self.writer.close()
            raise
        return text

    async def _answer(self, text: MessageText) -> None:
        assert self.envelope is not None
        refusal = text.refusal
        if refusal is not None:
            log.info("%s: message refused: %s", self.peer_ip(), refusal.value)
            self.end_transaction()
            await self.push(TEXT_REFUSALS[refusal])
            return
        self.envelope.content = self.envelope.original_content = text.content  # type: ignore[assignment]
        try:
            status = await self.call_handler("DATA")
        finally:
            # The transaction ends with the end of data, whatever the handler did: after
            # a 451 from handle_exception the client starts again with MAIL.
            self.end_transaction()
        await self.push(replies.S250_OK if status is MISSING else status)
