"""aiosmtpd's SMTP protocol, adjusted for an MX: enhanced status codes on every reply,
PIPELINING and ENHANCEDSTATUSCODES advertised, no AUTH (this is not a submission server)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

from aiosmtpd.smtp import MISSING, syntax

from app import message
from app.smtp import replies
from app.smtp.aiosmtpd_seams import SeamedSMTP
from app.smtp.data import END, MessageText, Refusal, TextStarter
from app.smtp.limits import DATA_RESERVE, DEFAULT_LIMITS, Gate, MemoryBudget, SessionLimits

log = logging.getLogger(__name__)

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
# What breaks a header line (app.message), and the lone surrogates that stand for bytes
# that are not UTF-8 (aiosmtpd decodes arguments with surrogateescape): never in a name
# we keep or echo.
UNSAFE_TEXT = re.compile(f"{message.LINE_BREAKING.pattern}|[\ud800-\udfff]")
# The path nearly every client sends: <dot-atom@host.name>, then the parameters. Such a
# path is its own address, so it skips the email package's RFC 5322 parser, which costs
# more than the rest of the command (anything else still goes through it).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# Not before "(": an RFC 5322 comment, which the parser skips (and then finds no
# parameters where we would see one).
SIMPLE_PATH = re.compile(
    rf"\s*<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>(?!\s*\()(.*)", re.DOTALL
)
BUILTIN_AUTH = ("LOGIN", "PLAIN")
# Replies that do not count against the error budget: our own trouble (4.3.0, 4.3.1), and
# recipients past the 100 a transaction takes (4.5.3), which the client is to send again
# in the next one (RFC 5321 4.5.3.1.10), as Postfix's recipient overshoot allows.
NOT_ERRORS = ("4.3.0", "4.3.1", "4.5.3")
TEXT_REFUSALS = {
    Refusal.TOO_MUCH: replies.S552_TOO_MUCH_DATA,
    Refusal.BARE_NEWLINE: replies.S550_BARE_NEWLINE,
    Refusal.LINE_TOO_LONG: replies.S500_LINE_TOO_LONG,
    Refusal.NO_ROOM: replies.S452_NO_ROOM,
}
HANG_UP_GRACE = 5.0  # seconds a client has to read our 421 before the connection is cut


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


class MailrouteSMTP(SeamedSMTP):
    """One SMTP session. Beyond aiosmtpd: enhanced status codes, the Gate's admission and
    message rate, and the SessionLimits (timeouts that trickling cannot stretch, a minimum
    data rate, an error budget), each ending the session with a 421 as Postfix does; the
    MemoryBudget that all sessions' message text shares."""

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
        super().__init__(
            handler, auth_exclude_mechanism=BUILTIN_AUTH, timeout=limits.timeout, **kwargs
        )
        self._limits = limits
        self._greeting_or_hello = False
        self._gate = gate
        self._counted_ip: str | None = None
        self._turned_away = False
        self._closing = False
        self._errors = 0
        self._junk_commands = 0
        self._receiving = False  # between DATA and the end of the message
        self._data_deadline = 0.0  # loop time at which the message must have come
        self._budget = budget if budget is not None else MemoryBudget()
        self._held = 0  # octets of the budget this session holds
        self._reset_command_size_limits()

    # --- admission -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS on the same session: admit the first call only.
        if self._gate is not None and self._counted_ip is None and not self._turned_away:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
            refusal = self._gate.admit(ip)
            if refusal is not None:
                self._turned_away = True
                # A cast, not an isinstance check: uvloop's transports do not subclass
                # asyncio's transport classes.
                writer = cast(asyncio.WriteTransport, transport)
                writer.write(refusal.encode() + b"\r\n")
                writer.close()
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

    # --- replies and the error budget ------------------------------------------------

    async def push(self, status: str) -> None:  # type: ignore[override]
        if self._closing:
            return  # a pipelined command after we said 421 gets no answer
        # Some of aiosmtpd's replies echo the client's argument ("502 Could not VRFY ...").
        # Printable ASCII, which nearly every reply is, holds nothing unsafe.
        if not (status.isascii() and status.isprintable()):
            status = UNSAFE_TEXT.sub("?", status)
        reply = status if self._greeting_or_hello else with_enhanced_code(status)
        await super().push(reply)
        if reply[:1] in ("4", "5") and reply[:3] != "421" and reply[4:9] not in NOT_ERRORS:
            self._count_error()

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors >= self._limits.error_limit:
            self._hang_up(replies.S421_TOO_MANY_ERRORS.format(hostname=self.hostname))

    def _hang_up(self, reply: str) -> None:
        """Say ``reply`` (a 421) and end the session, as aiosmtpd's QUIT does: commands
        already pipelined are not run. Written without waiting for the client to read it,
        and the connection is aborted if it still stands after HANG_UP_GRACE: a client
        that stops reading cannot keep its place in the Gate."""
        transport = self.transport
        if self._closing or transport is None:
            return
        self._closing = True
        log.warning("%s: %s", self._peer(), reply)
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's: not a subclass
        writer.write(reply.encode() + b"\r\n")
        self.stop_commands()
        writer.close()
        raw = self.tcp_transport or transport  # under TLS, the TCP connection
        self.loop.call_later(HANG_UP_GRACE, self._abort_if_open, raw)

    def _abort_if_open(self, raw: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            log.info("%s: not reading; connection aborted", self._peer())
            cast(asyncio.WriteTransport, raw).abort()

    async def _junk(self, command: Callable[[str], Awaitable[None]], arg: str) -> None:
        """NOOP, RSET, VRFY and HELP are free up to a point; past it each is an error."""
        self._junk_commands += 1
        if self._junk_commands > self._limits.junk_command_limit:
            self._count_error()
        if not self._closing:
            await command(arg)

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        await self._junk(super().smtp_NOOP, arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        await self._junk(super().smtp_RSET, arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        await self._junk(super().smtp_VRFY, arg)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        await self._junk(super().smtp_HELP, arg)

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

    # --- the message rate ------------------------------------------------------------

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str) -> None:
        ip = self._counted_ip
        if (
            self._gate is not None
            and ip is not None
            and self.envelope is not None
            and self.envelope.mail_from is None  # a nested MAIL is refused anyway
            and not self._gate.allow_message(ip)
        ):
            log.warning("%s: over the message rate", ip)
            await self.push(replies.S450_TOO_MUCH_MAIL.format(ip=ip))
            return
        # Postfix's "501 5.1.7" instead of aiosmtpd's "553 malformed address".
        assert self.session is not None
        if self.session.host_name and self._malformed_path(arg, "FROM:"):
            await self.push(replies.S501_BAD_SENDER)
            return
        await super().smtp_MAIL(arg)

    # --- addresses -------------------------------------------------------------------

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str) -> None:
        # Postfix's "501 5.1.3", once HELO and MAIL (which aiosmtpd checks first) were seen.
        assert self.session is not None and self.envelope is not None
        ready = self.session.host_name and self.envelope.mail_from
        if ready and self._malformed_path(arg, "TO:"):
            await self.push(replies.S501_BAD_ADDRESS)
            return
        if not self._penalized():
            await super().smtp_RCPT(arg)
        self._penalized()  # this recipient may have been the last guess allowed

    def _penalized(self) -> bool:
        """Whether the client is in the penalty box (a forged SRS address too many, in this
        session or another): then it hears 421 4.7.0 and the session ends."""
        penalty = self._gate.penalty if self._gate is not None else None
        ip = self._counted_ip
        if penalty is None or ip is None or not penalty.is_boxed(ip):
            return False
        self._hang_up(replies.S421_PENALTY)
        return True

    def _malformed_path(self, arg: str | None, keyword: str) -> bool:
        path = self.strip_keyword(keyword, arg) if arg else None
        if not path:
            return False  # aiosmtpd's own "501 Syntax: ..." for these
        address, _rest = self.parse_path(path)
        return address is None

    def parse_path(self, arg: str) -> tuple[str | None, str | None]:
        simple = SIMPLE_PATH.fullmatch(arg)
        if simple is not None and not self.local_part_limit:
            address, rest = simple.group(1), simple.group(2).lstrip(" \t")
        else:
            try:
                address, rest = super().parse_path(arg)
            except (IndexError, ValueError):  # the email package on "<" alone
                return None, None
        if address and rest is not None and unbalanced_path(arg, rest):
            return None, None
        if address and UNSAFE_TEXT.search(address):
            return None, None
        return address, rest

    # --- timeouts --------------------------------------------------------------------
    # aiosmtpd restarts its timer only when a whole valid command has arrived, which makes
    # the command timeout a deadline. While the message streams in, data_received moves
    # the deadline with every chunk, within the minimum data rate and never to more than
    # the timeout ahead. Our own work on the message (storing it, the in-session
    # delivery) does not count against the client.

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
            log.warning("%s: DATA refused: the in-transit memory budget is spent", self._peer())
            await self.push(replies.S452_NO_ROOM)
            return
        try:  # whatever ends the DATA (a reply, a hang-up, a cancellation) gives room back
            prefix = b""
            if isinstance(self.event_handler, TextStarter):
                prefix = self.event_handler.begin_data(self.session, self.envelope)
            await self.push(replies.S354_END_DATA)
            self._receiving = True
            self._data_deadline = self.loop.time() + self._limits.timeout
            text = await self._receive(prefix)
            if text is not None:
                await self._answer(text)
        finally:
            self._receiving = False
            self._budget.resize(self._held, 0)
            self._held = 0
            self._restart_timer()

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
                    log.warning("%s: message dropped: the memory budget is spent", self._peer())
                    text.refuse(Refusal.NO_ROOM)
                if text.refusal is not None:
                    self._hold(DATA_RESERVE)  # a refused text is no longer kept
        except asyncio.IncompleteReadError:
            log.info("%s: connection closed during DATA", self._peer())
            return None
        except asyncio.CancelledError:
            log.info("%s: connection lost during DATA", self._peer())
            self.writer.close()
            raise
        return text

    async def _answer(self, text: MessageText) -> None:
        assert self.envelope is not None
        refusal = text.refusal
        if refusal is not None:
            log.info("%s: message refused: %s", self._peer(), refusal.value)
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

    def data_received(self, data: bytes) -> None:
        if self._receiving:
            timeout = self._limits.timeout
            wait = timeout
            if self._limits.min_data_rate > 0:
                # Postfix's smtpd_min_data_rate: each read extends the deadline by the time
                # its bytes take at the minimum rate, "but never beyond smtpd_timeout". A
                # burst banks at most the timeout; the trickle after it earns almost
                # nothing, so the session, and the text it holds, ends soon after. The
                # whole DATA takes at most the timeout plus MAX_MESSAGE_SIZE at the rate.
                now = self.loop.time()
                earned = len(data) / self._limits.min_data_rate
                self._data_deadline = min(self._data_deadline + earned, now + timeout)
                wait = self._data_deadline - now
            self.reset_timer(max(wait, 0.001))  # 0 would mean the default to aiosmtpd
        super().data_received(data)

    async def call_handler(self, command: str, *args: Any) -> Any:
        if self._closing and command in ("MAIL", "RCPT", "DATA"):
            return replies.S421_TIMEOUT.format(hostname=self.hostname)  # never sent
        if command != "DATA":
            return await super().call_handler(command, *args)
        self._receiving = False
        self.stop_timer()
        try:
            return await super().call_handler(command, *args)
        finally:
            self._restart_timer()

    def _restart_timer(self) -> None:
        if self.transport is not None and not self._closing:
            self.reset_timer()

    def timed_out(self) -> None:
        self._hang_up(replies.S421_TIMEOUT.format(hostname=self.hostname))

    def _peer(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
