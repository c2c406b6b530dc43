"""Blocked senders over the wire: RCPT answers 550 5.7.1 for a blocked address or domain
where the block applies, 250 elsewhere and for the null sender, and the activity log
says ``blocked``."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from app.db.engine import session_scope
from app.db.models import Activity
from app.services import activity, blocks
from app.smtp import replies
from tests.smtp.conftest import LiveSmtp, in_thread
from tests.smtp.raw import Reply, greeted
from tests.smtp.stored import Sessionmaker

SHOP = "shop@example.org"
BLOCKED = replies.S550_BLOCKED_SENDER.format(address=SHOP)


def rcpt(live: LiveSmtp, sender: str, recipient: str = SHOP) -> str:
    """The whole reply to RCPT TO:<recipient> after MAIL FROM:<sender>."""
    with greeted(live.host, live.port) as client:
        assert client.command(f"MAIL FROM:<{sender}>".encode()).code == 250
        answer: Reply = client.command(f"RCPT TO:<{recipient}>".encode())
        return f"{answer.code} {answer.text.decode()}"


async def block(sessionmaker: Sessionmaker, sender: str, scope: str | None = None) -> None:
    async with session_scope(sessionmaker) as session:
        await blocks.create_block(session, sender, scope)


@pytest.mark.usefixtures("routed")
async def test_blocks_blocked_address_is_refused_at_rcpt(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    await block(sessionmaker, "spam@bad.example")

    assert await in_thread(rcpt, smtp_server, "SPAM@bad.example") == BLOCKED
    assert await in_thread(rcpt, smtp_server, "friend@bad.example") == (replies.S250_RECIPIENT_OK)


@pytest.mark.usefixtures("routed")
async def test_blocks_blocked_domain_refuses_it_and_its_subdomains(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    await block(sessionmaker, "bad.example")

    assert await in_thread(rcpt, smtp_server, "anyone@bad.example") == BLOCKED
    assert await in_thread(rcpt, smtp_server, "anyone@mail.bad.example") == BLOCKED
    assert await in_thread(rcpt, smtp_server, "anyone@good.example") == (replies.S250_RECIPIENT_OK)


@pytest.mark.usefixtures("routed")
async def test_blocks_scoped_block_does_not_apply_on_another_domain(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    await block(sessionmaker, "bad.example", scope="example.org")

    assert await in_thread(rcpt, smtp_server, "x@bad.example") == BLOCKED
    assert await in_thread(rcpt, smtp_server, "x@bad.example", "any@catchall.example") == (
        replies.S250_RECIPIENT_OK
    )


@pytest.mark.usefixtures("routed")
async def test_blocks_alias_scoped_block_spares_the_other_aliases(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    await block(sessionmaker, "spam@bad.example", scope=SHOP)

    assert await in_thread(rcpt, smtp_server, "spam@bad.example") == BLOCKED
    assert await in_thread(rcpt, smtp_server, "spam@bad.example", "team@example.org") == (
        replies.S250_RECIPIENT_OK
    )


@pytest.mark.usefixtures("routed")
async def test_blocks_null_sender_is_not_blocked(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    await block(sessionmaker, "spam@bad.example")
    await block(sessionmaker, "bad.example")

    assert await in_thread(rcpt, smtp_server, "") == replies.S250_RECIPIENT_OK


@pytest.mark.usefixtures("routed")
async def test_blocks_refusal_is_logged_as_blocked(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    await block(sessionmaker, "spam@bad.example")

    await in_thread(rcpt, smtp_server, "spam@bad.example")

    rows: list[Activity] = []
    for _ in range(200):  # written in the background (app.smtp.refusals)
        async with sessionmaker() as session:
            rows = list(await session.scalars(select(Activity)))
        if rows:
            break
        await asyncio.sleep(0.05)
    assert [(r.status, r.address, r.mail_from, r.domain) for r in rows] == [
        (activity.BLOCKED, SHOP, "spam@bad.example", "example.org")
    ]
    assert rows[0].reply == (
        "mail from spam@bad.example to shop@example.org is blocked (block 1: spam@bad.example)"
    )
