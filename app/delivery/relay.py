"""Sending to a destination's mail host with aiosmtplib: one connection, several messages.

TLS: ``opportunistic`` is Postfix's ``may``: STARTTLS whenever the server offers it, the
certificate not checked (an MX's certificate rarely matches its name, and checking would
only make delivery fall back to plain text). ``require`` refuses to send in clear.

A smarthost is different: the operator named it, and we log in to it. Its certificate is
checked against its name (Postfix's ``secure`` level) unless turned off, and a failed
check defers rather than falling back to clear. Credentials are never sent without TLS
(RFC 4954 4 and 14: PLAIN and LOGIN send the password as it is): a smarthost that does
not offer STARTTLS, or one we were told not to upgrade, gets no AUTH, and the mail waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosmtplib

from app.delivery import aiosmtplib_seams as seams
from app.delivery.data import write_text
from app.delivery.mx import Target
from app.delivery.outcome import Failure, Outcome, from_exception, from_failure, from_reply

log = logging.getLogger(__name__)

TlsPolicy = Literal["opportunistic", "require"]
CONNECT_TIMEOUT = 30.0
COMMAND_TIMEOUT = 300.0  # RFC 5321 4.5.3.2: up to 10 minutes for the end of DATA


@dataclass(frozen=True, slots=True)
class RelayConfig:
    local_hostname: str
    tls_policy: TlsPolicy = "opportunistic"
    timeout: float = COMMAND_TIMEOUT
    username: str | None = None  # for a smarthost
    password: str | None = None
    implicit_tls: bool = False
    starttls: bool = True  # False: never upgrade (a smarthost on a trusted network)
    # Check the server's certificate against its host name (a smarthost); trusting the
    # system's CAs and, if given, those in ``ca_file``.
    verify_certificates: bool = False
    ca_file: Path | None = None

    @property
    def has_credentials(self) -> bool:
        return bool(self.username and self.password)


class ConnectFailed(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reply)
        self.outcome = outcome


def needs_smtputf8(sender: str, recipient: str, content: bytes) -> bool:
    """RFC 6531 3.4: non-ASCII addresses or header fields need the SMTPUTF8 extension."""
    head_end = content.find(b"\r\n\r\n")
    head = content if head_end == -1 else content[:head_end]
    return not (sender.isascii() and recipient.isascii() and head.isascii())


class Connection:
    """An open, greeted (and, where possible, encrypted) session with one host."""

    def __init__(self, client: aiosmtplib.SMTP, target: Target) -> None:
        self.client = client
        self.target = target

    @property
    def remote(self) -> str:
        return f"{self.target.host}[{self.target.address}]"

    @property
    def alive(self) -> bool:
        return self.client.is_connected

    async def send(
        self, sender: str, recipient: str, content: bytes, prefix: bytes = b""
    ) -> Outcome:
        """One transaction: MAIL, RCPT, DATA, the text ``prefix`` (header fields we add:
        our signatures) then ``content``. Our own commands rather than aiosmtplib's
        sendmail(), which runs each address through the email package's RFC 5322 parser
        (the CPU per message that bench/forwarding.py reports): these addresses
        were parsed when they came in."""
        utf8 = needs_smtputf8(sender, recipient, content)
        if utf8 and not self.client.supports_extension("smtputf8"):
            return from_failure(Failure.NO_SMTPUTF8, self.remote)
        options = [b"SMTPUTF8"] if utf8 else []
        if not content.isascii() and self.client.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        encoding = "utf-8" if utf8 else "ascii"
        try:
            mail = await self.client.execute_command(
                b"MAIL", b"FROM:<" + sender.encode(encoding) + b">", *options
            )
            if mail.code != 250:
                return await self._refused(mail)
            rcpt = await self.client.execute_command(
                b"RCPT", b"TO:<" + recipient.encode(encoding) + b">"
            )
            if rcpt.code not in (250, 251):
                return await self._refused(rcpt)
            reply = await self._data(content, prefix)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            return from_exception(exc, self.remote)
        return from_reply(reply.code, reply.message, self.remote)

    async def _data(self, content: bytes, prefix: bytes) -> aiosmtplib.SMTPResponse:
        """DATA, the text written a block at a time as the destination takes it
        (app.delivery.data), a reply before its end kept (app.delivery.aiosmtplib_seams)."""
        start = await self.client.execute_command(b"DATA")
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = self.client.protocol
        assert protocol is not None
        timeout = self.client.timeout
        try:
            seams.keep_early_reply(protocol)  # a reply before the end is not dropped
            async with asyncio.timeout(timeout):
                early = await write_text(protocol, content, prefix)
            reply = await protocol.read_response(timeout=timeout)
        except (
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            TimeoutError,
            ConnectionError,
            asyncio.CancelledError,
        ):
            self.client.close()  # as data() does: the session is in an unknown state
            raise
        if early:
            # The text was cut short: this session cannot go on, and a 2xx before the
            # end of data cannot mean the message was taken.
            self.client.close()
            if reply.code < 400:
                raise aiosmtplib.SMTPDataError(
                    451, f"answered before the end of data: {reply.code} {reply.message}"
                )
        if reply.code != 250:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply

    async def _refused(self, reply: aiosmtplib.SMTPResponse) -> Outcome:
        """The outcome of a refused MAIL or RCPT; the transaction is reset for the next."""
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await self.client.rset()
        return from_reply(reply.code, reply.message, self.remote)

    async def close(self) -> None:
        if self.client.is_connected:
            try:
                await self.client.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.client.close()


async def connect(target: Target, config: RelayConfig) -> Connection:
    """Connect, EHLO, STARTTLS when offered (or required); ConnectFailed otherwise.

    Opportunistic TLS whose handshake fails is retried in clear at once, as Postfix's
    ``may`` level does: encryption is a bonus there, never a reason not to deliver. Not
    so when the certificate is to be checked, or credentials are to be sent: then TLS
    is what makes the connection acceptable at all.
    """
    try:
        return await _open(target, config, starttls=config.starttls)
    except TlsHandshakeFailed as exc:
        if config.tls_policy == "require" or config.verify_certificates or config.has_credentials:
            log.warning("TLS with %s failed, not sending in clear: %s", exc.remote, exc)
            raise ConnectFailed(from_failure(Failure.TLS_FAILED, exc.remote, str(exc))) from exc
        return await _open(target, config, starttls=False)


class TlsHandshakeFailed(Exception):
    def __init__(self, remote: str, reason: str) -> None:
        super().__init__(reason)
        self.remote = remote


async def _open(target: Target, config: RelayConfig, *, starttls: bool) -> Connection:
    client = aiosmtplib.SMTP(
        hostname=target.address,
        port=target.port,
        local_hostname=config.local_hostname,
        timeout=config.timeout,
        use_tls=config.implicit_tls,
        start_tls=False,
        # Implicit TLS checks the name connected to: the smarthost's, as configured.
        tls_context=_tls_context(config.verify_certificates, config.ca_file),
    )
    remote = f"{target.host}[{target.address}]"
    try:
        await client.connect(timeout=CONNECT_TIMEOUT)
        await client.ehlo()
        encrypted = config.implicit_tls
        if starttls and not config.implicit_tls:
            if client.supports_extension("starttls"):
                await _starttls(client, target, config, remote)
                encrypted = True
            elif config.tls_policy == "require":
                raise ConnectFailed(from_failure(Failure.TLS_NOT_OFFERED, remote))
        if config.has_credentials:
            await _login(client, config, remote, encrypted=encrypted)
    except (ConnectFailed, TlsHandshakeFailed):
        client.close()
        raise
    except (aiosmtplib.SMTPException, OSError) as exc:
        client.close()
        raise ConnectFailed(from_exception(exc, remote)) from exc
    return Connection(client, target)


async def _starttls(
    client: aiosmtplib.SMTP, target: Target, config: RelayConfig, remote: str
) -> None:
    try:
        await client.starttls(
            server_hostname=target.host,
            tls_context=_tls_context(config.verify_certificates, config.ca_file),
        )
    except (ssl.SSLError, aiosmtplib.SMTPException, OSError) as exc:
        raise TlsHandshakeFailed(remote, str(exc)) from exc
    await client.ehlo()  # RFC 3207 4.2: what the server offers starts over


async def _login(
    client: aiosmtplib.SMTP, config: RelayConfig, remote: str, *, encrypted: bool
) -> None:
    assert config.username and config.password
    if not encrypted:
        log.warning(
            "not sending the smarthost credentials to %s in clear: it offers no STARTTLS"
            " or MAILROUTE_SMARTHOST_TLS is none; deferring",
            remote,
        )
        raise ConnectFailed(from_failure(Failure.CLEAR_CREDENTIALS, remote))
    try:
        await client.login(config.username, config.password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        detail = f"{exc.code} {exc.message}"
        raise ConnectFailed(from_failure(Failure.LOGIN_REFUSED, remote, detail)) from exc


@functools.cache
def _tls_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """One context per setting, built once (it reads the CA files)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context
