"""An SMTP sink for delivery tests: a real aiosmtpd server on loopback that records what it
is sent and fails the next RCPT, DATA or connection on demand.

The server runs in its own thread (aiosmtpd's Controller), so the code under test talks
to it from the test's event loop as it would to any remote host.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

Stage = Literal["rcpt", "data"]

S250_RECIPIENT_OK = "250 2.1.5 OK"
S250_QUEUED = "250 2.0.0 OK: queued as {number}"
S421_DROPPED = "421 4.4.2 sink closing connection"  # never seen: the connection is gone
SERVER_HOSTNAME = "sink.test"


@dataclass(frozen=True, slots=True)
class Received:
    """One message as the sink got it."""

    mail_from: str  # as aiosmtpd keeps it: "<>" for the null sender
    rcpt_tos: list[str]
    content: bytes  # the DATA bytes, dot-unstuffed, exactly as the client meant them
    tls: bool  # whether the session had been upgraded with STARTTLS
    mail_options: list[str]
    peer: tuple[str, int]  # the client's address: one per TCP connection
    helo: str | None


@dataclass(frozen=True, slots=True)
class _Plan:
    reply: str | None = None  # answer this instead of accepting
    drop: bool = False  # close the connection instead of answering
    stall: float = 0.0  # wait this long before going on


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = await self.sink._follow_plan("rcpt", server)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return S250_RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        refusal = await self.sink._follow_plan("data", server)
        if refusal is not None:
            return refusal
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=envelope.original_content,
            tls=session.ssl is not None,
            mail_options=list(envelope.mail_options),
            peer=tuple(session.peer),
            helo=session.host_name,
        )
        with self.sink._lock:
            self.sink.received.append(received)
            number = len(self.sink.received)
            self.sink._lock.notify_all()
        return S250_QUEUED.format(number=number)


class _Controller(Controller):
    """Binds the port itself, so that port 0 (any free port) works and a restarted sink
    can take the same port again."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.hostname, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return self.loop.create_server(self._factory_invoker, sock=sock, ssl=self.ssl_context)


@dataclass(eq=False)
class Sink:
    """``Sink().start()``; then ``received``, and the knobs ``refuse_rcpt`` etc."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port, fixed at the first start
    tls_context: ssl.SSLContext | None = None  # offer STARTTLS with this
    smtputf8: bool = True  # advertise SMTPUTF8 (RFC 6531)
    received: list[Received] = field(default_factory=list)
    stalls_begun: int = 0  # stalls that have started, so a test knows a client waits
    _plans: dict[str, deque[_Plan]] = field(
        default_factory=lambda: {"rcpt": deque(), "data": deque()}
    )
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _controller: _Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Sink:
        assert self._controller is None, "sink already running"
        # A Controller's event loop is closed when it stops: a new one for every start.
        controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname=SERVER_HOSTNAME,
            tls_context=self.tls_context,
            require_starttls=False,
            enable_SMTPUTF8=self.smtputf8,
            ready_timeout=10.0,
        )
        try:
            controller.start()
        except BaseException:
            controller.loop.close()
            raise
        self.port = controller.port
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` messages have arrived; from a test's event loop, call it
        through ``asyncio.to_thread``."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(f"the sink got {len(self.received)} of {count} messages")
            return list(self.received)

    def wait_stalling(self, count: int = 1, timeout: float = 10.0) -> None:
        """Block until ``count`` planned stalls have begun (a client waits for a reply)."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.stalls_begun >= count, timeout):
                raise TimeoutError(f"{self.stalls_begun} of {count} stalls began")

    def refuse_rcpt(self, reply: str, times: int = 1) -> None:
        """Answer the next ``times`` RCPT commands with ``reply``, e.g. "550 5.1.1 no"."""
        self._plan("rcpt", _Plan(reply=reply), times)

    def refuse_data(self, reply: str, times: int = 1) -> None:
        """Answer the end of the next ``times`` DATA commands with ``reply``."""
        self._plan("data", _Plan(reply=reply), times)

    def drop_at(self, stage: Stage, times: int = 1) -> None:
        """Close the connection instead of answering the next RCPT or end of DATA."""
        self._plan(stage, _Plan(drop=True), times)

    def stall_at(self, stage: Stage, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before answering the next RCPT or end of DATA."""
        self._plan(stage, _Plan(stall=seconds), times)

    def _plan(self, stage: Stage, plan: _Plan, times: int) -> None:
        with self._lock:
            self._plans[stage].extend([plan] * times)

    async def _follow_plan(self, stage: Stage, server: SMTP) -> str | None:
        """Runs in the sink's thread: the reply to give instead of accepting, if any."""
        with self._lock:
            plan = self._plans[stage].popleft() if self._plans[stage] else None
        if plan is None:
            return None
        if plan.stall:
            with self._lock:
                self.stalls_begun += 1
                self._lock.notify_all()
            await asyncio.sleep(plan.stall)
        if plan.drop:
            assert server.transport is not None
            server.transport.abort()
            # connection_lost() cancels this session's task; the reply below is not sent.
            await asyncio.sleep(5)
            return S421_DROPPED
        return plan.reply


def self_signed_context(directory: Path, common_name: str = SERVER_HOSTNAME) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate written to ``directory``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        _self_signed_with_cryptography(cert, key, common_name)
    except ImportError:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                f"/CN={common_name}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _self_signed_with_cryptography(cert: Path, key: Path, common_name: str) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(private_key, hashes.SHA256())
    )
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
