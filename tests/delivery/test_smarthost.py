"""The delivery worker relaying everything through a smarthost, with SMTP AUTH (RFC 4954).

The smarthost is a real aiosmtpd server on loopback that checks credentials and records
every AUTH attempt; it offers STARTTLS unless told not to, and would even take PLAIN and
LOGIN in clear, so that the tests see whether we send them. The resolver knows no domain
at all: with a smarthost, no MX look-up is needed.
"""

from __future__ import annotations

import secrets
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Activity, Delivery, Message
from app.delivery.mx import Target
from app.delivery.relay import RelayConfig
from app.delivery.worker import DeliveryWorker, WorkerConfig
from app.routing import Decision, MatchKind, Outcome
from app.routing.srs import Srs
from app.services import inbound
from tests.conftest import HOSTNAME
from tests.delivery.conftest import Clock
from tests.delivery.sink import SERVER_HOSTNAME, Sink, _Controller, self_signed_context
from tests.fakes import FakeResolver

Sessionmaker = async_sessionmaker[AsyncSession]
USERNAME = "relay-user"
PASSWORD = "relay-secret-123"
SMARTHOST_NAME = "smarthost.test"
CONTENT = b"From: alice@sender.example\r\nTo: shop@example.org\r\nSubject: hi\r\n\r\nHello\r\n"


@dataclass(frozen=True, slots=True)
class Relayed:
    """One message as the smarthost got it."""

    rcpt_tos: list[str]
    content: bytes
    login: str | None  # who authenticated for it, if anyone
    tls: bool


@dataclass(eq=False)
class AuthSink:
    """Records every AUTH attempt (mechanism, login) and every message accepted."""

    attempts: list[tuple[str, str]] = field(default_factory=list)
    received: list[Relayed] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        with self._lock:
            self.attempts.append((mechanism, data.login.decode()))
        valid = (data.login, data.password) == (USERNAME.encode(), PASSWORD.encode())
        return AuthResult(success=valid, handled=False, auth_data=data)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert server.transport is not None
        data = session.auth_data
        login = data.login.decode() if isinstance(data, LoginPassword) else None
        relayed = Relayed(
            rcpt_tos=list(envelope.rcpt_tos),
            content=envelope.original_content or b"",
            login=login,
            tls=server.transport.get_extra_info("ssl_object") is not None,
        )
        with self._lock:
            self.received.append(relayed)
        return "250 2.0.0 OK: queued"


@dataclass
class RunningSmarthost:
    sink: AuthSink
    port: int

    def target(self) -> Target:
        return Target("smarthost", "127.0.0.1", self.port)

    def named_target(self) -> Target:
        """The smarthost by the name its own certificate carries (named_certificate)."""
        return Target(SMARTHOST_NAME, "127.0.0.1", self.port)


@pytest.fixture
def make_smarthost(
    sink_tls_context: ssl.SSLContext,
) -> Iterator[Callable[..., RunningSmarthost]]:
    """``make_smarthost(mechanisms=["LOGIN"], starttls=False, ssl_context=...)``: an AUTH
    sink offering those mechanisms, with STARTTLS (the sinks' self-signed certificate, or
    ``tls_context``'s) unless ``starttls`` is False, or implicit TLS if given a context."""
    controllers: list[_Controller] = []

    def make(
        mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
        starttls: bool = True,
        tls_context: ssl.SSLContext | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> RunningSmarthost:
        if starttls and ssl_context is None:
            tls_context = tls_context or sink_tls_context
        sink = AuthSink()
        controller = _Controller(
            sink,
            hostname="127.0.0.1",
            port=0,
            server_hostname=SERVER_HOSTNAME,
            ready_timeout=10.0,
            tls_context=tls_context,
            ssl_context=ssl_context,
            require_starttls=False,
            authenticator=sink.authenticate,
            auth_require_tls=False,
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN") if m not in mechanisms],
        )
        controller.start()
        controllers.append(controller)
        return RunningSmarthost(sink, controller.port)

    yield make
    for controller in controllers:
        controller.stop()


def relay_config(
    *,
    username: str | None = USERNAME,
    password: str | None = PASSWORD,
    starttls: bool = True,
    implicit_tls: bool = False,
    verify_certificates: bool = False,
    ca_file: Path | None = None,
) -> RelayConfig:
    return RelayConfig(
        local_hostname=HOSTNAME,
        username=username,
        password=password,
        starttls=starttls,
        implicit_tls=implicit_tls,
        verify_certificates=verify_certificates,
        ca_file=ca_file,
    )


def worker_for(
    sessionmaker: Sessionmaker,
    clock: Clock,
    target: Target,
    relay: RelayConfig,
    resolver: FakeResolver | None = None,
) -> DeliveryWorker:
    config = WorkerConfig(hostname=HOSTNAME, smarthost=target, relay=relay)
    return DeliveryWorker(
        sessionmaker, resolver or FakeResolver(), config, clock=clock, jitter=lambda: 0.5
    )


async def queue_inbound(
    sessionmaker: Sessionmaker, clock: Clock, destinations: tuple[str, ...]
) -> list[int]:
    """Store CONTENT as the SMTP server does for shop@example.org; the delivery ids."""
    decision = Decision(
        Outcome.FORWARD, "forwarded by test", matched_by=MatchKind.EXACT, destinations=destinations
    )
    arrival = inbound.Arrival(
        queue_id=secrets.token_hex(6),
        client_ip="192.0.2.1",
        helo="client.example",
        mail_from="alice@sender.example",
        content=CONTENT,
        message_id="<1@sender.example>",
    )
    async with session_scope(sessionmaker) as session:
        incoming = [inbound.Incoming(arrival, [inbound.Accepted("shop@example.org", decision)])]
        srs = Srs("test-srs-secret-0123456789", HOSTNAME)
        (stored,) = await session.run_sync(
            lambda sync: inbound.store(
                sync, incoming, srs=srs, queue_lifetime=timedelta(days=5), now=clock()
            )
        )
    return stored.delivery_ids


async def all_deliveries(sessionmaker: Sessionmaker) -> list[Delivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Delivery).order_by(Delivery.id)))


async def activity_statuses(sessionmaker: Sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Activity.status).order_by(Activity.id)))


async def bounces(sessionmaker: Sessionmaker) -> list[Message]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Message).where(Message.kind == "dsn")))


# Routing: everything goes to the smarthost


async def test_smarthost_gets_mail_for_every_domain(
    sessionmaker: Sessionmaker, clock: Clock, sink: Sink
) -> None:
    target = Target("smarthost", sink.host, sink.port)
    worker = worker_for(sessionmaker, clock, target, relay_config(username=None, password=None))
    await queue_inbound(sessionmaker, clock, ("me@inbox.example", "someone@nowhere.example"))
    assert await worker.run_once() == 2
    assert sorted(r.rcpt_tos[0] for r in sink.received) == [
        "me@inbox.example",
        "someone@nowhere.example",
    ]


async def test_smarthost_needs_no_dns(sessionmaker: Sessionmaker, clock: Clock, sink: Sink) -> None:
    resolver = FakeResolver()
    target = Target("smarthost", sink.host, sink.port)
    worker = worker_for(
        sessionmaker, clock, target, relay_config(username=None, password=None), resolver
    )
    await queue_inbound(sessionmaker, clock, ("someone@nowhere.example",))
    await worker.run_once()
    assert resolver.queries == []


async def test_smarthost_delivered_is_logged_with_the_smarthost(
    sessionmaker: Sessionmaker, clock: Clock, sink: Sink
) -> None:
    target = Target("smarthost", sink.host, sink.port)
    worker = worker_for(sessionmaker, clock, target, relay_config(username=None, password=None))
    await queue_inbound(sessionmaker, clock, ("someone@nowhere.example",))
    await worker.run_once()
    async with sessionmaker() as session:
        [row] = list(await session.scalars(select(Activity)))
    assert (row.status, row.remote_host) == ("forwarded", "smarthost[127.0.0.1]")
    assert await all_deliveries(sessionmaker) == []


async def test_smarthost_down_defers(
    sessionmaker: Sessionmaker, clock: Clock, make_sink: Callable[..., Sink]
) -> None:
    stopped = make_sink()
    stopped.stop()  # its port is now closed
    target = Target("smarthost", stopped.host, stopped.port)
    worker = worker_for(sessionmaker, clock, target, relay_config(username=None, password=None))
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.recipient, delivery.status, delivery.attempts) == (
        "me@inbox.example",
        "queued",
        1,
    )


# SMTP AUTH


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_smarthost_auth_uses_the_credentials(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    mechanism: str,
) -> None:
    smarthost = make_smarthost(mechanisms=(mechanism,))
    worker = worker_for(sessionmaker, clock, smarthost.target(), relay_config())
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    assert smarthost.sink.attempts == [(mechanism, USERNAME)]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_smarthost_auth_delivers_authenticated(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    mechanism: str,
) -> None:
    smarthost = make_smarthost(mechanisms=(mechanism,))
    worker = worker_for(sessionmaker, clock, smarthost.target(), relay_config())
    await queue_inbound(sessionmaker, clock, ("someone@nowhere.example",))
    await worker.run_once()
    assert [(r.rcpt_tos, r.login) for r in smarthost.sink.received] == [
        (["someone@nowhere.example"], USERNAME)
    ]
    assert await all_deliveries(sessionmaker) == []


async def test_smarthost_without_credentials_does_not_authenticate(
    sessionmaker: Sessionmaker, clock: Clock, make_smarthost: Callable[..., RunningSmarthost]
) -> None:
    smarthost = make_smarthost()
    config = relay_config(username=None, password=None)
    worker = worker_for(sessionmaker, clock, smarthost.target(), config)
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    assert smarthost.sink.attempts == []
    assert [r.login for r in smarthost.sink.received] == [None]


async def test_smarthost_wrong_password_defers(
    sessionmaker: Sessionmaker, clock: Clock, make_smarthost: Callable[..., RunningSmarthost]
) -> None:
    smarthost = make_smarthost()
    worker = worker_for(sessionmaker, clock, smarthost.target(), relay_config(password="wrong"))
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.recipient, delivery.status, delivery.attempts) == (
        "me@inbox.example",
        "queued",
        1,
    )
    assert delivery.next_attempt_at == clock() + timedelta(seconds=60)
    assert smarthost.sink.received == []


async def test_smarthost_wrong_password_sends_no_bounce(
    sessionmaker: Sessionmaker, clock: Clock, make_smarthost: Callable[..., RunningSmarthost]
) -> None:
    # Our own misconfiguration, which the operator can fix: like Postfix's default
    # smtp_sasl_auth_soft_bounce=yes, a 535 defers the mail instead of returning it.
    smarthost = make_smarthost()
    worker = worker_for(sessionmaker, clock, smarthost.target(), relay_config(password="wrong"))
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    assert await bounces(sessionmaker) == []
    assert await activity_statuses(sessionmaker) == ["deferred"]


async def test_smarthost_without_auth_but_credentials_configured_defers(
    sessionmaker: Sessionmaker, clock: Clock, sink: Sink
) -> None:
    target = Target("smarthost", sink.host, sink.port)
    worker = worker_for(sessionmaker, clock, target, relay_config())
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.recipient, delivery.status, delivery.attempts) == (
        "me@inbox.example",
        "queued",
        1,
    )
    assert sink.received == []


# TLS to the smarthost


async def test_smarthost_starttls_then_auth(
    sessionmaker: Sessionmaker, clock: Clock, make_smarthost: Callable[..., RunningSmarthost]
) -> None:
    smarthost = make_smarthost()
    worker = worker_for(sessionmaker, clock, smarthost.target(), relay_config(starttls=True))
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    assert [(r.tls, r.login) for r in smarthost.sink.received] == [(True, USERNAME)]


async def deferred_without_auth(
    sessionmaker: Sessionmaker, smarthost: RunningSmarthost, status: str
) -> None:
    """The one delivery waits with ``status``, and the smarthost saw no AUTH and no mail."""
    [delivery] = await all_deliveries(sessionmaker)
    assert (delivery.status, delivery.attempts) == ("queued", 1)
    assert await activity_statuses(sessionmaker) == ["deferred"]
    assert delivery.last_reply is not None and status in delivery.last_reply, delivery.last_reply
    assert smarthost.sink.attempts == []
    assert smarthost.sink.received == []
    assert await bounces(sessionmaker) == []


async def test_smarthost_without_starttls_gets_no_credentials(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It offers AUTH PLAIN and LOGIN in clear: the password would go as it is.
    smarthost = make_smarthost(starttls=False)
    worker = worker_for(sessionmaker, clock, smarthost.target(), relay_config())
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    await deferred_without_auth(sessionmaker, smarthost, "credentials are sent only over TLS")
    assert "not sending the smarthost credentials" in caplog.text


async def test_smarthost_starttls_off_with_credentials_defers_without_auth(
    sessionmaker: Sessionmaker, clock: Clock, make_smarthost: Callable[..., RunningSmarthost]
) -> None:
    smarthost = make_smarthost()
    worker = worker_for(sessionmaker, clock, smarthost.target(), relay_config(starttls=False))
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    await deferred_without_auth(sessionmaker, smarthost, "credentials are sent only over TLS")


async def test_smarthost_starttls_off_without_credentials_stays_in_clear(
    sessionmaker: Sessionmaker, clock: Clock, make_smarthost: Callable[..., RunningSmarthost]
) -> None:
    smarthost = make_smarthost()
    config = relay_config(username=None, password=None, starttls=False)
    worker = worker_for(sessionmaker, clock, smarthost.target(), config)
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    assert [(r.tls, r.login) for r in smarthost.sink.received] == [(False, None)]


# Checking the smarthost's certificate


@pytest.fixture
def named_certificate(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for SMARTHOST_NAME, and its file."""
    return self_signed_context(tmp_path, SMARTHOST_NAME), tmp_path / "cert.pem"


async def test_smarthost_self_signed_certificate_not_trusted_defers(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    named_certificate: tuple[ssl.SSLContext, Path],
) -> None:
    context, _cert = named_certificate
    smarthost = make_smarthost(tls_context=context)
    config = relay_config(verify_certificates=True)
    worker = worker_for(sessionmaker, clock, smarthost.named_target(), config)
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    await deferred_without_auth(sessionmaker, smarthost, "TLS handshake failed")


async def test_smarthost_self_signed_certificate_not_trusted_no_credentials_defers(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    named_certificate: tuple[ssl.SSLContext, Path],
) -> None:
    # No falling back to clear text when the certificate does not check out.
    context, _cert = named_certificate
    smarthost = make_smarthost(tls_context=context)
    config = relay_config(username=None, password=None, verify_certificates=True)
    worker = worker_for(sessionmaker, clock, smarthost.named_target(), config)
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    await deferred_without_auth(sessionmaker, smarthost, "TLS handshake failed")


async def test_smarthost_certificate_in_the_ca_file_delivers(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    named_certificate: tuple[ssl.SSLContext, Path],
) -> None:
    context, cert = named_certificate
    smarthost = make_smarthost(tls_context=context)
    config = relay_config(verify_certificates=True, ca_file=cert)
    worker = worker_for(sessionmaker, clock, smarthost.named_target(), config)
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    assert [(r.tls, r.login) for r in smarthost.sink.received] == [(True, USERNAME)]


async def test_smarthost_certificate_for_another_name_defers(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    named_certificate: tuple[ssl.SSLContext, Path],
) -> None:
    context, cert = named_certificate
    smarthost = make_smarthost(tls_context=context)
    config = relay_config(verify_certificates=True, ca_file=cert)
    target = Target("other.test", "127.0.0.1", smarthost.port)
    worker = worker_for(sessionmaker, clock, target, config)
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    await deferred_without_auth(sessionmaker, smarthost, "TLS handshake failed")


async def test_smarthost_implicit_tls_then_auth(
    sessionmaker: Sessionmaker,
    clock: Clock,
    make_smarthost: Callable[..., RunningSmarthost],
    sink_tls_context: ssl.SSLContext,
) -> None:
    smarthost = make_smarthost(ssl_context=sink_tls_context)
    config = relay_config(implicit_tls=True, starttls=False)
    worker = worker_for(sessionmaker, clock, smarthost.target(), config)
    await queue_inbound(sessionmaker, clock, ("me@inbox.example",))
    await worker.run_once()
    assert [(r.tls, r.login) for r in smarthost.sink.received] == [(True, USERNAME)]
