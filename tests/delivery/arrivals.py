"""Mail queued as the SMTP server queues it for a forwarding alias: what the worker finds."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.routing import Decision, MatchKind, Outcome
from app.routing.srs import Srs
from app.services import inbound
from tests.conftest import HOSTNAME
from tests.delivery.conftest import Clock

SRS_SECRET = "test-srs-secret-0123456789"
SENDER = "alice@sender.example"
ALIAS = "shop@example.org"
DESTINATION = "me@inbox.example"
CONTENT = (
    b"Received: from client.example ([192.0.2.1])\r\n"
    b"\tby mx.mailroute.example (mailroute) with ESMTP id abc123\r\n"
    b"\tfor <shop@example.org>; Wed, 01 May 2024 12:00:00 +0000\r\n"
    b"From: Alice <alice@sender.example>\r\n"
    b"To: shop@example.org\r\n"
    b"Subject: the order\r\n"
    b"Message-ID: <1@sender.example>\r\n"
    b"\r\n"
    b"Hello\r\n"
)


async def queue_inbound(
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    sender: str = SENDER,
    alias: str = ALIAS,
    destinations: tuple[str, ...] = (DESTINATION,),
    lifetime: timedelta = timedelta(days=5),
    authenticated: bool | None = None,
    verdicts: dict[str, Any] | None = None,
) -> list[int]:
    """Store CONTENT as the SMTP server does for a forwarding alias; the delivery ids.
    ``authenticated``: what the inbound checks proved of the sender (None: not checked)."""
    decision = Decision(
        Outcome.FORWARD, "forwarded by test", matched_by=MatchKind.EXACT, destinations=destinations
    )
    arrival = inbound.Arrival(
        queue_id=secrets.token_hex(6),
        client_ip="192.0.2.1",
        helo="client.example",
        mail_from=sender,
        content=CONTENT,
        message_id="<1@sender.example>",
        authenticated=authenticated,
        verdicts=verdicts or {},
    )
    async with session_scope(sessionmaker) as session:
        incoming = [inbound.Incoming(arrival, [inbound.Accepted(alias, decision)])]
        srs = Srs(SRS_SECRET, HOSTNAME)
        (stored,) = await session.run_sync(
            lambda sync: inbound.store(
                sync, incoming, srs=srs, queue_lifetime=lifetime, now=clock()
            )
        )
    return stored.delivery_ids
