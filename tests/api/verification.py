"""Destinations waiting for verification: adding one through the API, the link its
verification message carries, and time passing for the resend limits."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from email.message import EmailMessage

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import session_scope
from app.db.models import Message, VerificationSend
from app.services.verification_limits import RESEND_COOLDOWN
from tests.conftest import PUBLIC_URL

LINK = re.compile(re.escape(PUBLIC_URL) + r"/v1/verify/([A-Za-z0-9_-]+)")


async def add_destination(client: httpx.AsyncClient, address: str) -> dict:
    response = await client.post("/v1/destinations", json={"email": address})
    assert response.status_code == 201, response.text
    body: dict = response.json()
    return body


def parse(message: Message) -> EmailMessage:
    parsed = email.message_from_bytes(message.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def link_token(message: Message) -> str:
    body = parse(message).get_body(("plain",))
    assert body is not None
    match = LINK.search(body.get_content())
    assert match is not None, body.get_content()
    return match.group(1)


async def latest_link(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """The path of the link in the newest queued verification message."""
    async with sessionmaker() as session:
        message = await session.scalar(
            select(Message).where(Message.kind == "verification").order_by(Message.id.desc())
        )
    assert message is not None
    return f"/v1/verify/{link_token(message)}"


async def time_passes(
    sessionmaker: async_sessionmaker[AsyncSession], by: timedelta = RESEND_COOLDOWN
) -> None:
    """Move every recorded verification send ``by`` into the past, as if that much time
    had passed (the resend limits read the clock of the sends' rows)."""
    async with session_scope(sessionmaker) as session:
        for send in await session.scalars(select(VerificationSend)):
            send.sent_at -= by
