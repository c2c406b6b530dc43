"""mailroute end to end, in process, against real peers.

The SMTP server (``InboundHandler`` + ``start_server``) listens on 127.0.0.1 on the test's
event loop; the delivery worker resolves MX and A records through dnsmasq and relays to a
real Postfix, which delivers into Maildirs the tests read. Clients are real too: smtplib
(run in a thread, so the server on this loop keeps answering) and swaks (a subprocess).

The worker is driven step by step with ``Mailroute.deliver()`` rather than slept for.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import smtplib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Activity, Delivery, Message
from app.delivery.relay import RelayConfig
from app.delivery.worker import DeliveryWorker, WorkerConfig
from app.inbound_auth.checker import InboundChecks
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.policy import Mode
from app.resolver import DnsResolver
from app.routing import Action
from app.routing.networks import DeliveryNetworks
from app.routing.srs import Srs
from app.runtime.signing import LiveSigning
from app.services import aliases, destinations, domains
from app.services.signing_keys import KeySource
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.server import start_server
from tests.conftest import HOSTNAME
from tests.peers.dkim_keys import Key, rsa_key, txt_strings
from tests.peers.dnsmasq import Dnsmasq, Zone
from tests.peers.postfix import Postfix
from tests.peers.tools import require_tool

SRS_SECRET = "integration-srs-secret-0123456789"
DOMAIN = "example.org"  # the domain mailroute serves
CATCH_ALL_DOMAIN = "catchall.example"
CLIENT_NAME = "client.example"
MAX_MESSAGE_SIZE = 256 * 1024
INLINE_TIMEOUT = 20.0  # seconds the DATA reply may wait for the destination
STEP_TIMEOUT = 60.0  # one worker step, one client session, one swaks run
DKIM_DOMAIN = "sender.example"
# Postfix listens on 127.0.0.2 and 127.0.0.3: loopback, which delivery refuses unless allowed.
LOOPBACK_ALLOWED = DeliveryNetworks(allowed=(ipaddress.ip_network("127.0.0.0/8"),))
DKIM_SELECTOR = "sel"
DKIM_KEY_NAME = f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}"
SIGNING_SELECTOR = "mr202612"  # our own key's, signing as HOSTNAME
SIGNING_KEY_NAME = f"{SIGNING_SELECTOR}._domainkey.{HOSTNAME}"


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> Key:
    """The key of sender.example, published at DKIM_KEY_NAME."""
    return rsa_key(tmp_path_factory.mktemp("dkim"))


def merged(*zones: Zone) -> Zone:
    return Zone(
        mx=[r for z in zones for r in z.mx],
        txt=[r for z in zones for r in z.txt],
        hosts=[r for z in zones for r in z.hosts],
        local_domains=[d for z in zones for d in z.local_domains],
    )


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Key]:
    """Our own signing key (MAILROUTE_DKIM_KEY_FILE), and its record."""
    key = rsa_key(tmp_path_factory.mktemp("signing"))
    path = tmp_path_factory.mktemp("signing-file") / "dkim.pem"
    path.write_bytes(key.private)
    return path, key


@pytest.fixture
def dnsmasq_zone(
    postfix_server: Postfix,
    postfix_tls_server: Postfix,
    dkim_key: Key,
    signing_key_file: tuple[Path, Key],
) -> Zone:
    """MX records to both Postfix instances, the DKIM key of sender.example, and ours."""
    ours = signing_key_file[1]
    dkim = Zone(
        txt=[
            (DKIM_KEY_NAME, txt_strings(dkim_key.record)),
            (SIGNING_KEY_NAME, txt_strings(ours.record)),
        ],
        local_domains=[DKIM_DOMAIN],
    )
    return merged(postfix_server.zone(), postfix_tls_server.zone(), dkim)


@dataclass
class Transaction:
    """The replies to one mail transaction; ``data`` is None when DATA was not reached."""

    mail: str
    rcpt: list[str]
    data: str | None


def _reply(answer: tuple[int, bytes]) -> str:
    code, text = answer
    return f"{code} {text.decode('utf-8', 'replace')}"


@dataclass
class Mailroute:
    """One mailroute, in process: its SMTP address, handler, worker and database."""

    host: str
    port: int
    handler: InboundHandler
    worker: DeliveryWorker
    sessionmaker: async_sessionmaker[AsyncSession]
    srs: Srs

    # --- sending ---------------------------------------------------------------------

    def _transact(
        self,
        sender: str,
        recipients: Sequence[str],
        content: bytes,
        mail_options: Sequence[str],
    ) -> Transaction:
        with smtplib.SMTP(
            self.host, self.port, local_hostname=CLIENT_NAME, timeout=STEP_TIMEOUT
        ) as client:
            client.ehlo()
            mail = _reply(client.mail(sender, list(mail_options)))
            rcpt = [_reply(client.rcpt(r)) for r in recipients]
            data = None
            if mail.startswith("250") and any(r.startswith("250") for r in rcpt):
                data = _reply(client.data(content))
            return Transaction(mail, rcpt, data)

    async def send(
        self,
        sender: str,
        recipients: Sequence[str],
        content: bytes,
        mail_options: Sequence[str] = (),
    ) -> Transaction:
        """One transaction with smtplib, in a thread; every reply, none raised."""
        return await asyncio.wait_for(
            asyncio.to_thread(self._transact, sender, recipients, content, mail_options),
            STEP_TIMEOUT,
        )

    # --- delivering ------------------------------------------------------------------

    async def deliver(self, max_steps: int = 5) -> int:
        """Run worker steps until one finds nothing due (a DSN queued by one step goes
        out in the next); the number of deliveries handled."""
        handled = 0
        for _ in range(max_steps):
            step = await asyncio.wait_for(self.worker.run_once(), STEP_TIMEOUT)
            if step == 0:
                return handled
            handled += step
        raise AssertionError(f"still deliveries due after {max_steps} worker steps")

    # --- configuring -----------------------------------------------------------------

    async def forward(self, address: str, *to: str) -> str:
        """An alias (or, for ``*@domain``, the catch-all) forwarding to verified ``to``."""
        local_part, _, domain = address.rpartition("@")
        async with session_scope(self.sessionmaker) as session:
            for destination in to:
                if not await destinations.find_destinations(session, [destination]):
                    await destinations.add_verified_destination(session, destination)
            if local_part == "*":
                await aliases.put_catch_all(
                    session, domain, enabled=True, action=Action.FORWARD, destinations=list(to)
                )
            else:
                await aliases.create_alias(
                    session, domain, local_part=local_part, destinations=list(to)
                )
        return address

    async def drop(self, address: str) -> str:
        local_part, _, domain = address.rpartition("@")
        async with session_scope(self.sessionmaker) as session:
            await aliases.create_alias(session, domain, local_part=local_part, action=Action.DROP)
        return address

    # --- looking ---------------------------------------------------------------------

    async def activity(self) -> list[Activity]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(Activity).order_by(Activity.id)))

    async def deliveries(self) -> list[Delivery]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(Delivery).order_by(Delivery.id)))

    async def stored_messages(self) -> int:
        async with self.sessionmaker() as session:
            return await session.scalar(select(func.count()).select_from(Message)) or 0


MailrouteFactory = Callable[..., Awaitable[Mailroute]]


@pytest.fixture
def dns_resolver(dnsmasq: Dnsmasq) -> DnsResolver:
    return DnsResolver([(dnsmasq.host, dnsmasq.port)], lifetime=3)


@pytest.fixture
async def start_mailroute(
    sessionmaker: async_sessionmaker[AsyncSession],
    dns_resolver: DnsResolver,
    dnsmasq: Dnsmasq,
    postfix: Postfix,
    signing_key_file: tuple[Path, Key],
) -> AsyncIterator[MailrouteFactory]:
    """Start mailroute (``inline_timeout`` 0: queue only) serving example.org and
    catchall.example; every server started is closed when the test ends."""
    servers: list[asyncio.Server] = []
    handlers: list[InboundHandler] = []
    async with session_scope(sessionmaker) as session:
        await domains.create_domain(session, DOMAIN)
        await domains.create_domain(session, CATCH_ALL_DOMAIN)

    async def start(
        inline_timeout: float = 0.0, checks: Mode | None = None, signing: bool = False
    ) -> Mailroute:
        """``checks``: the inbound checks' mode (through dnsmasq); None: none.
        ``signing``: our DKIM signature and ARC seal, with signing_key_file's key."""
        srs = Srs(SRS_SECRET, HOSTNAME)
        config = WorkerConfig(
            hostname=HOSTNAME,
            delivery_port=25,
            relay=RelayConfig(local_hostname=HOSTNAME, timeout=STEP_TIMEOUT / 2),
            networks=LOOPBACK_ALLOWED,
        )
        worker = DeliveryWorker(
            sessionmaker,
            dns_resolver,
            config,
            jitter=lambda: 0.5,
            signing=live_signing() if signing else None,
        )
        handler = InboundHandler(
            sessionmaker,
            srs,
            InboundConfig(
                hostname=HOSTNAME,
                queue_lifetime=timedelta(days=5),
                inline_delivery_timeout=inline_timeout,
            ),
            inline=worker,
            checks=None if checks is None else inbound_checks(checks),
        )
        server = await start_server(
            handler, host="127.0.0.1", port=0, max_message_size=MAX_MESSAGE_SIZE
        )
        servers.append(server)
        handlers.append(handler)
        port = server.sockets[0].getsockname()[1]
        return Mailroute("127.0.0.1", port, handler, worker, sessionmaker, srs)

    def live_signing() -> LiveSigning:
        source = KeySource(SIGNING_SELECTOR, signing_key_file[0])
        return LiveSigning(sessionmaker, source, domain=HOSTNAME, authserv_id=HOSTNAME, dkim=True)

    def inbound_checks(mode: Mode) -> InboundChecks:
        nameservers = [(dnsmasq.host, dnsmasq.port)]
        checking = InboundChecks(
            mode=mode,
            authserv_id=HOSTNAME,
            resolver=dns_resolver,
            lookups=Lookups(nameservers, lifetime=3),
        )
        opened.append(checking)
        return checking

    opened: list[InboundChecks] = []
    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
    for handler in handlers:
        await handler.drain()
    for checking in opened:
        await checking.aclose()


@pytest.fixture
async def mailroute(start_mailroute: MailrouteFactory) -> Mailroute:
    """Queue only: DATA is answered once the message is stored; ``deliver()`` sends it."""
    return await start_mailroute()


@pytest.fixture
async def mailroute_inline(start_mailroute: MailrouteFactory) -> Mailroute:
    """In-session delivery: DATA is answered after the attempt to the destination."""
    return await start_mailroute(inline_timeout=INLINE_TIMEOUT)


def message(
    sender: str,
    to: str,
    subject: str,
    body: str = "Hello.\n",
    extra: Sequence[str] = (),
) -> bytes:
    """A message as it travels: CRLF line ends (RFC 5322 2.1), UTF-8 left as is."""
    lines = [
        f"From: <{sender}>" if sender else "From: <mailer-daemon@sender.example>",
        f"To: <{to}>",
        f"Subject: {subject}",
        f"Message-ID: <{secrets.token_hex(8)}@sender.example>",
        *extra,
    ]
    text = "\n".join(lines) + "\n\n" + body
    return text.replace("\n", "\r\n").encode()


def stored(sent: bytes) -> bytes:
    """``sent`` as a Maildir file holds it: LF line ends."""
    return sent.replace(b"\r\n", b"\n")


def as_sent(delivered: bytes, added: int = 3) -> bytes:
    """A Maildir file without the ``added`` header fields Postfix put on top (Return-Path,
    Delivered-To, Received): the message as the last hop sent it, with LF line ends."""
    lines = delivered.split(b"\n")
    index = 0
    for _ in range(added):
        index += 1
        while lines[index][:1] in (b" ", b"\t"):  # continuation lines (RFC 5322 2.2.3)
            index += 1
    return b"\n".join(lines[index:])


async def wait_for(postfix: Postfix, mailbox: str, count: int = 1) -> list[bytes]:
    """Postfix.wait_for off the event loop (it polls with time.sleep)."""
    return await asyncio.to_thread(postfix.wait_for, mailbox, count)


async def swaks(*args: str) -> tuple[int, str]:
    """Run swaks; its exit status (man swaks, EXIT CODES) and its transcript."""
    program = require_tool("swaks", "swaks")
    process = await asyncio.create_subprocess_exec(
        program,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), STEP_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")
