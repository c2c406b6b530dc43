"""DNS blocklists at connect, over the wire: dnsmasq serves a zone listing 127.0.0.2, the
client connects from a chosen loopback address, and a listed one hears Postfix's
``554 5.7.1`` instead of the greeting. A blocklist that fails or does not answer lets the
client in (logged), as Postfix does."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.config import DnsblZone, load_settings
from app.db.models import Activity
from app.errors import DnsNoSuchDomain, DnsTemporaryFailure
from app.resolver import DnsResolver
from app.routing.srs import Srs
from app.runtime import runtime
from app.runtime.smtp import listen
from app.services import activity
from app.smtp import replies
from app.smtp.blocklists import Blocklists
from app.smtp.handler import InboundConfig, InboundHandler
from app.smtp.limits import Gate
from app.smtp.refusals import RefusalLog
from app.smtp.server import start_server
from tests.conftest import HOSTNAME
from tests.peers.dnsmasq import Dnsmasq, Zone
from tests.peers.tools import free_port
from tests.smtp.stored import Sessionmaker

LISTED = "127.0.0.2"
UNLISTED = "127.0.0.1"
BOUND = 15.0


@pytest.fixture
def dnsmasq_zone() -> Zone:
    return Zone(local_domains=["bl.test", "clean.test"], hosts=[("2.0.0.127.bl.test", LISTED)])


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> str:
        line = await asyncio.wait_for(self.reader.readline(), BOUND)
        return line.decode().rstrip("\r\n")

    async def command(self, line: str) -> str:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()


Connect = Callable[[str], Any]


@pytest.fixture
def serve(sessionmaker: Sessionmaker, srs: Srs) -> Callable[..., Any]:
    """A server on 127.0.0.1 whose Gate asks ``blocklists``; connect(source) opens a
    session from that loopback address."""

    @asynccontextmanager
    async def serving(blocklists: Blocklists) -> AsyncIterator[tuple[Connect, InboundHandler]]:
        handler = InboundHandler(
            sessionmaker, srs, InboundConfig(hostname=HOSTNAME, queue_lifetime=timedelta(days=5))
        )
        gate = Gate(blocklists=blocklists)
        server = await start_server(
            handler, host="127.0.0.1", port=0, max_message_size=1 << 20, gate=gate
        )
        port = server.sockets[0].getsockname()[1]
        writers: list[asyncio.StreamWriter] = []

        async def connect(source: str) -> Client:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
            writers.append(writer)
            return Client(reader, writer)

        try:
            connect.gate = gate  # type: ignore[attr-defined]
            yield connect, handler
        finally:
            for writer in writers:
                writer.close()
            # Every session over, its connection closed on our side too, before the loop.
            await asyncio.wait_for(gate.wait_idle(), BOUND)
            server.close()
            await server.wait_closed()
            await handler.drain()

    return serving


def blocklists(dnsmasq: Dnsmasq, *zones: str, **kwargs: Any) -> Blocklists:
    resolver = DnsResolver([(dnsmasq.host, dnsmasq.port)], lifetime=3)
    return Blocklists([DnsblZone.parse(z) for z in zones], resolver, **kwargs)


@pytest.fixture
def silent_dns() -> Iterator[tuple[str, int]]:
    """A DNS server that never answers: a UDP socket nobody reads."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()


@pytest.mark.dnsmasq
async def test_blocklist_listed_client_refused_at_connect(
    serve: Callable[..., Any], dnsmasq: Dnsmasq
) -> None:
    async with serve(blocklists(dnsmasq, "bl.test")) as (connect, _):
        client = await connect(LISTED)
        assert await client.reply() == (
            "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using bl.test"
        )
        # RFC 5321 3.1: then every command but QUIT hears 503, and QUIT ends the session.
        assert await client.command("EHLO client.example") == (
            "503 5.7.0 Error: access denied for unknown[127.0.0.2]"
        )
        assert await client.command("MAIL FROM:<a@sender.example>") == (
            replies.S503_ACCESS_DENIED.format(ip=LISTED)
        )
        assert await client.command("QUIT") == replies.S221_BYE
        assert await asyncio.wait_for(client.reader.read(), BOUND) == b""


@pytest.mark.dnsmasq
async def test_blocklist_refusal_is_in_the_activity_log(
    serve: Callable[..., Any], dnsmasq: Dnsmasq, sessionmaker: Sessionmaker
) -> None:
    async with serve(blocklists(dnsmasq, "bl.test")) as (connect, handler):
        client = await connect(LISTED)
        greeting = await client.reply()
        await client.command("QUIT")
        await handler.drain()
    async with sessionmaker() as session:
        rows = (await session.scalars(select(Activity))).all()
    assert [(r.status, r.client_ip, r.reply, r.address) for r in rows] == [
        (activity.REJECTED, LISTED, greeting, None)
    ]


@pytest.mark.dnsmasq
async def test_blocklist_unlisted_client_greeted(
    serve: Callable[..., Any], dnsmasq: Dnsmasq
) -> None:
    async with serve(blocklists(dnsmasq, "bl.test")) as (connect, _):
        client = await connect(UNLISTED)
        assert (await client.reply()).startswith("220 ")
        assert (await client.command("HELO client.example")).startswith("250 ")


@pytest.mark.dnsmasq
@pytest.mark.parametrize(
    ("zone", "refused"),
    [("bl.test=127.0.0.3", False), ("bl.test=127.0.0.[2..11]", True), ("bl.test=127.0.0.2", True)],
)
async def test_blocklist_reply_filter_decides(
    serve: Callable[..., Any], dnsmasq: Dnsmasq, zone: str, refused: bool
) -> None:
    async with serve(blocklists(dnsmasq, zone)) as (connect, _):
        client = await connect(LISTED)
        assert (await client.reply()).startswith("554 5.7.1 " if refused else "220 ")


@pytest.mark.dnsmasq
async def test_blocklist_any_zone_that_lists_refuses(
    serve: Callable[..., Any], dnsmasq: Dnsmasq
) -> None:
    async with serve(blocklists(dnsmasq, "clean.test", "bl.test")) as (connect, _):
        client = await connect(LISTED)
        assert await client.reply() == replies.S554_BLOCKLISTED.format(ip=LISTED, zone="bl.test")


async def test_blocklist_that_does_not_answer_lets_the_client_in(
    serve: Callable[..., Any], silent_dns: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    resolver = DnsResolver([silent_dns], lifetime=5)
    lists = Blocklists([DnsblZone.parse("bl.test")], resolver, timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="app.smtp.blocklists"):
        async with serve(lists) as (connect, _):
            client = await connect(LISTED)
            assert (await client.reply()).startswith("220 ")
    assert any("client let in" in r.getMessage() for r in caplog.records)


class FakeResolver:
    """A records by name; a name in ``failing`` fails; counts the questions asked."""

    def __init__(self, records: dict[str, list[str]], failing: tuple[str, ...] = ()) -> None:
        self.records = records
        self.failing = failing
        self.asked: list[str] = []

    async def ipv4(self, name: str) -> list[str]:
        self.asked.append(name)
        if name in self.failing:
            raise DnsTemporaryFailure(f"{name}: SERVFAIL")
        if name not in self.records:
            raise DnsNoSuchDomain(name)
        return self.records[name]


async def test_blocklist_verdicts_are_kept_for_a_while() -> None:
    now = [0.0]
    resolver = FakeResolver({"2.0.0.127.bl.test": [LISTED]})
    lists = Blocklists([("bl.test", None)], resolver, ttl=300, clock=lambda: now[0])
    assert await lists.listing(LISTED) == "bl.test"
    assert await lists.listing(UNLISTED) is None
    assert await lists.listing(LISTED) == "bl.test"
    assert await lists.listing(UNLISTED) is None
    assert len(resolver.asked) == 2
    now[0] = 301.0
    assert await lists.listing(LISTED) == "bl.test"
    assert len(resolver.asked) == 3


async def test_blocklist_failures_are_not_kept() -> None:
    resolver = FakeResolver({}, failing=("2.0.0.127.bl.test",))
    lists = Blocklists([("bl.test", None)], resolver)
    assert await lists.listing(LISTED) is None
    assert await lists.listing(LISTED) is None
    assert len(resolver.asked) == 2


async def test_blocklist_listing_wins_over_another_zone_failing() -> None:
    resolver = FakeResolver({"2.0.0.127.bl.test": [LISTED]}, failing=("2.0.0.127.down.test",))
    lists = Blocklists([("down.test", None), ("bl.test", None)], resolver)
    assert await lists.listing(LISTED) == "bl.test"


async def test_blocklist_cache_is_bounded() -> None:
    resolver = FakeResolver({})
    lists = Blocklists([("bl.test", None)], resolver, max_cached=2)
    for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"):
        await lists.listing(ip)
    assert len(resolver.asked) == 4  # 192.0.2.1 was forgotten, the oldest


async def test_blocklist_client_gone_during_the_look_up_is_not_kept(
    serve: Callable[..., Any], silent_dns: tuple[str, int]
) -> None:
    # aiosmtpd cancels the session at the client's EOF; the connection must close then,
    # not stay counted in the Gate until the server stops.
    resolver = DnsResolver([silent_dns], lifetime=30)
    lists = Blocklists([DnsblZone.parse("bl.test")], resolver, timeout=30)
    async with serve(lists) as (connect, _):
        client = await connect(LISTED)
        await asyncio.sleep(0.2)  # the look-up is under way
        client.writer.close()
        await asyncio.wait_for(connect.gate.wait_idle(), 5)


@pytest.mark.dnsmasq
@pytest.mark.usefixtures("engine")
async def test_blocklist_from_settings_in_the_smtp_role(
    dnsmasq: Dnsmasq, database_url: str
) -> None:
    """MAILROUTE_DNSBL, asked through MAILROUTE_DNS_NAMESERVERS, in `mailroute smtp`."""
    port = free_port("127.0.0.1")
    settings = load_settings(
        database_url=database_url,
        hostname=HOSTNAME,
        srs_secret="test-srs-secret-0123456789",
        smtp_port=port,
        dns_nameservers=f"{dnsmasq.host}:{dnsmasq.port}",
        dnsbl="bl.test=127.0.0.2",
        postmaster="postmaster@example.org",
    )
    stop = asyncio.Event()
    async with runtime(settings) as rt:
        serving = asyncio.create_task(listen(rt, stop))
        try:
            for _ in range(100):
                try:
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", port, local_addr=(LISTED, 0)
                    )
                    break
                except ConnectionRefusedError:
                    await asyncio.sleep(0.05)
            greeting = Client(reader, writer)
            assert await greeting.reply() == replies.S554_BLOCKLISTED.format(
                ip=LISTED, zone="bl.test"
            )
            assert await greeting.command("QUIT") == replies.S221_BYE
            writer.close()
        finally:
            stop.set()
            await asyncio.wait_for(serving, BOUND)


async def test_blocklist_refusals_past_the_budget_are_summed_up_as_connections() -> None:
    written: list[dict[str, Any]] = []
    refusals = RefusalLog(written.append, per_minute=1, window=0.01, what="connections")
    row = activity.row(
        activity.Envelope(LISTED, None), status=activity.REJECTED, address=None, reply="554"
    )
    for _ in range(3):
        refusals.refused(row)
    for _ in range(100):
        if len(written) == 2:
            break
        await asyncio.sleep(0.01)
    assert written[0] is row
    assert written[1]["reply"] == (
        "2 more connections refused from this client within a minute (not logged one by one)"
    )
