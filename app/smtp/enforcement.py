"""The limits, enforced on one SMTP session, as Postfix's smtpd and anvil enforce theirs:
the Gate's admission and message rate, the penalty box, the error budget, and timeouts
that trickling cannot stretch. Each ends the session with a 421, said once before hanging up.

LimitedSMTP is the layer between aiosmtpd (app.smtp.aiosmtpd_seams) and the dialogue
(app.smtp.protocol), which asks ``over_message_rate`` and ``penalized`` and starts and
stops the DATA clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiosmtpd.smtp import syntax

from app.smtp import replies
from app.smtp.aiosmtpd_seams import SeamedSMTP
from app.smtp.blocklists import ConnectionRefusals
from app.smtp.limits import DEFAULT_LIMITS, Gate, SessionLimits

log = logging.getLogger(__name__)

# Replies that do not count against the error budget: our own trouble (4.3.0, 4.3.1), and
# recipients past the 100 a transaction takes (4.5.3), which the client is to send again
# in the next one (RFC 5321 4.5.3.1.10), as Postfix's recipient overshoot allows.
NOT_ERRORS = ("4.3.0", "4.3.1", "4.5.3")


class LimitedSMTP(SeamedSMTP):
    """aiosmtpd's session under a Gate (shared by the server's sessions) and SessionLimits."""

    def __init__(
        self, handler: Any, gate: Gate | None, limits: SessionLimits = DEFAULT_LIMITS, **kwargs: Any
    ) -> None:
        super().__init__(handler, timeout=limits.timeout, **kwargs)
        self._limits = limits
        self._gate = gate
        self._counted_ip: str | None = None
        self._turned_away = False
        self._closing = False
        self._errors = 0
        self._junk_commands = 0
        self._receiving = False  # between DATA and the end of the message
        self._data_deadline = 0.0  # loop time at which the message must have come

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

    async def handle_client(self) -> None:
        # Asked before the greeting, as Postfix's smtpd with smtpd_delay_reject=no.
        blocklists = self._gate.blocklists if self._gate is not None else None
        ip = self._counted_ip
        if blocklists is None or ip is None:
            await super().handle_client()
            return
        try:
            zone = await blocklists.listing(ip)
            if zone is not None:
                await self._refused_session(replies.S554_BLOCKLISTED.format(ip=ip, zone=zone), ip)
                return
        except asyncio.CancelledError:
            # aiosmtpd cancels the session at the client's EOF (or we hung up): as its own
            # loop does then, close, lest a client gone during the look-up stay counted.
            self.writer.close()
            raise
        await super().handle_client()

    async def _refused_session(self, greeting: str, ip: str) -> None:
        """RFC 5321 3.1: after a 554 greeting the server waits for QUIT and answers
        other commands with 503 (Postfix's words), each an error against the budget."""
        log.warning("%s: refused: %s", ip, greeting)
        if isinstance(self.event_handler, ConnectionRefusals):
            self.event_handler.connection_refused(ip, greeting)
        await self.push(greeting)
        while self.transport is not None and not self._closing:
            try:
                line = await self.reader.readuntil()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                break  # gone, or a line past the stream's limit: no more to say
            self.reset_timer()
            if line.strip().partition(b" ")[0].upper() == b"QUIT":
                await self.push(replies.S221_BYE)
                break
            await self.push(replies.S503_ACCESS_DENIED.format(ip=ip))
        self.writer.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._turned_away:
            return  # aiosmtpd never saw this connection
        if self._counted_ip is not None and self._gate is not None:
            self._gate.closed(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    async def over_message_rate(self) -> bool:
        """Whether this MAIL is one too many for the client's message rate; then it has
        heard 450 4.7.1. A nested MAIL is not counted: it is refused anyway."""
        ip = self._counted_ip
        if (
            self._gate is None
            or ip is None
            or self.envelope is None
            or self.envelope.mail_from is not None
            or self._gate.allow_message(ip)
        ):
            return False
        log.warning("%s: over the message rate", ip)
        await self.push(replies.S450_TOO_MUCH_MAIL.format(ip=ip))
        return True

    def penalized(self) -> bool:
        """Whether the client is in the penalty box (a forged SRS address too many, in this
        session or another): then it hears 421 4.7.0 and the session ends."""
        penalty = self._gate.penalty if self._gate is not None else None
        ip = self._counted_ip
        if penalty is None or ip is None or not penalty.is_boxed(ip):
            return False
        self.hang_up(replies.S421_PENALTY)
        return True

    # --- the error budget ------------------------------------------------------------

    async def push(self, status: str) -> None:  # type: ignore[override]
        if self._closing:
            return  # a pipelined command after we said 421 gets no answer
        await super().push(status)
        if status[:1] in ("4", "5") and status[:3] != "421" and status[4:9] not in NOT_ERRORS:
            self._count_error()

    def _count_error(self) -> None:
        self._errors += 1
        if self._errors >= self._limits.error_limit:
            self.hang_up(replies.S421_TOO_MANY_ERRORS.format(hostname=self.hostname))

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

    # --- hanging up ------------------------------------------------------------------

    def hang_up(self, reply: str) -> None:
        """Say ``reply`` (a 421) and end the session, as aiosmtpd's QUIT does: commands
        already pipelined are not run. Written without waiting for the client to read it,
        and the connection is aborted if it still stands after the limits' hang_up_grace:
        a client that stops reading cannot keep its place in the Gate."""
        transport = self.transport
        if self._closing or transport is None:
            return
        self._closing = True
        log.warning("%s: %s", self.peer_ip(), reply)
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's: not a subclass
        writer.write(reply.encode() + b"\r\n")
        self.stop_commands()
        writer.close()
        raw = self.tcp_transport or transport  # under TLS, the TCP connection
        self.loop.call_later(self._limits.hang_up_grace, self._abort_if_open, raw)

    def _abort_if_open(self, raw: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            log.info("%s: not reading; connection aborted", self.peer_ip())
            cast(asyncio.WriteTransport, raw).abort()

    # --- timeouts --------------------------------------------------------------------
    # aiosmtpd restarts its timer only when a whole valid command has arrived, which makes
    # the command timeout a deadline. While the message streams in, data_received moves
    # the deadline with every chunk, within the minimum data rate and never to more than
    # the timeout ahead. Our own work on the message (storing it, the in-session
    # delivery) does not count against the client.

    def start_data_clock(self) -> None:
        """The 354 is said: the message has the timeout to start coming."""
        self._receiving = True
        self._data_deadline = self.loop.time() + self._limits.timeout

    def stop_data_clock(self) -> None:
        """The DATA is over, however it ended: the command timeout again."""
        self._receiving = False
        self._restart_timer()

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
        self.hang_up(replies.S421_TIMEOUT.format(hostname=self.hostname))

    def peer_ip(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
