"""How often one destination may be mailed a verification link.

Anyone with an API token can add an inbox and ask for the link to be sent again: without
a limit, we would mail a third party's inbox at the API's rate, a mail bomb sent in our
name. Per destination, at most one message every RESEND_COOLDOWN and SENDS_PER_DAY in
any 24 hours; the first message (POST /v1/destinations) counts. The sends are rows in
the database, so every node and every restart counts the same ones.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Destination, VerificationSend
from app.errors import ResendLimited

RESEND_COOLDOWN = timedelta(minutes=5)
SENDS_PER_DAY = 10
DAY = timedelta(days=1)


async def take_send(session: AsyncSession, destination: Destination, now: datetime) -> None:
    """Count one verification message to ``destination`` at ``now``, or raise
    ResendLimited, saying how long until one may go."""
    # The destination's row is locked first: concurrent resends take turns, so two cannot
    # both find room for one more (SQLite's writers take turns anyway).
    await session.execute(
        select(Destination.id).where(Destination.id == destination.id).with_for_update()
    )
    await session.execute(
        delete(VerificationSend).where(
            VerificationSend.destination_id == destination.id, VerificationSend.sent_at <= now - DAY
        )
    )
    sent = list(
        await session.scalars(
            select(VerificationSend.sent_at)
            .where(VerificationSend.destination_id == destination.id)
            .order_by(VerificationSend.sent_at)
        )
    )
    day_full = sent[-SENDS_PER_DAY] + DAY - now if len(sent) >= SENDS_PER_DAY else None
    cooling = sent[-1] + RESEND_COOLDOWN - now if sent else None
    if day_full is not None and (cooling is None or day_full >= cooling):
        raise ResendLimited(
            f"{destination.email} was sent {SENDS_PER_DAY} verification messages in the last "
            f"24 hours; retry in {_seconds(day_full)} s",
            _seconds(day_full),
        )
    if cooling is not None and cooling > timedelta(0):
        raise ResendLimited(
            f"a verification message was sent to {destination.email} less than "
            f"{RESEND_COOLDOWN.seconds // 60} minutes ago; retry in {_seconds(cooling)} s",
            _seconds(cooling),
        )
    session.add(VerificationSend(destination_id=destination.id, sent_at=now))


def _seconds(wait: timedelta) -> int:
    return max(1, math.ceil(wait.total_seconds()))
