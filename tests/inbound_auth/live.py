"""A live SMTP server with the inbound checks on, and what a test sends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import dkim
from sqlalchemy import select

from app.db.models import Activity
from app.inbound_auth.checker import InboundChecks
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.policy import Mode
from app.inbound_auth.rspamd import Rspamd
from app.resolver import DnsResolver
from app.routing.srs import Srs
from tests.conftest import HOSTNAME
from tests.inbound_auth.conftest import DKIM_DOMAIN, Key
from tests.smtp.conftest import SRS_SECRET, LiveSmtp, running_smtp
from tests.smtp.stored import Sessionmaker

ALIAS = "shop@example.org"
AR_PREFIX = f"Authentication-Results: {HOSTNAME};".encode()


def message(author: str, *, extra: bytes = b"") -> bytes:
    return (
        extra + f"From: Alice <{author}>\r\n".encode() + b"To: shop@example.org\r\n"
        b"Subject: checked\r\n"
        b"Message-ID: <checked@example.test>\r\n"
        b"\r\n"
        b"Hello, checks.\r\n"
    )


def signed(text: bytes, key: Key, domain: str = DKIM_DOMAIN, selector: bytes = b"rsa") -> bytes:
    signature = dkim.sign(
        text, selector, domain.encode(), key.private, include_headers=[b"from", b"to", b"subject"]
    )
    return signature + text


@asynccontextmanager
async def checking(
    sessionmaker: Sessionmaker,
    nameserver: tuple[str, int],
    *,
    mode: Mode = Mode.ENFORCE,
    lifetime: float = 5.0,
    spam_filter: Rspamd | None = None,
    tempfail_spam: bool = False,
) -> AsyncIterator[LiveSmtp]:
    """A live server checking mail through ``nameserver`` (and ``spam_filter``)."""
    checks = InboundChecks(
        mode=mode,
        authserv_id=HOSTNAME,
        resolver=DnsResolver([nameserver], lifetime=lifetime),
        lookups=Lookups([nameserver], lifetime),
        spam_filter=spam_filter,
        tempfail_spam=tempfail_spam,
        time_limit=4 * lifetime,
    )
    async with running_smtp(sessionmaker, Srs(SRS_SECRET, HOSTNAME), checks=checks) as live:
        yield live
    await checks.aclose()


def send(live: LiveSmtp, sender: str, text: bytes, *recipients: str) -> tuple[int, bytes]:
    """One transaction (to ALIAS by default); the reply to DATA, or to a refused RCPT."""
    with live.client() as client:
        client.ehlo("client.auth.test")
        client.mail(sender)
        for rcpt in recipients or (ALIAS,):
            code, reply = client.rcpt(rcpt)
            if code != 250:
                return code, reply
        return client.data(text)


def whole(reply: tuple[int, bytes]) -> str:
    return f"{reply[0]} {reply[1].decode()}"


async def activity_rows(sessionmaker: Sessionmaker) -> list[Activity]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Activity).order_by(Activity.id)))
