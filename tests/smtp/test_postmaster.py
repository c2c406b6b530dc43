"""RFC 5321 4.5.1: a server MUST accept mail for <postmaster> (no domain, any case) and
for postmaster at its own name; mailroute sends it to the operator's address
(MAILROUTE_POSTMASTER), and refuses it clearly when none is set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from app.db.models import Delivery
from app.routing.srs import Srs
from app.smtp import replies
from tests.conftest import HOSTNAME
from tests.smtp.conftest import LiveSmtp, in_thread, running_smtp
from tests.smtp.raw import Reply, greeted
from tests.smtp.stored import Sessionmaker

OPERATOR = "ops@operator.example"
BODY = b"From: a@sender.example\r\nSubject: abuse report\r\n\r\nHello\r\n"


@pytest.fixture
async def with_postmaster(sessionmaker: Sessionmaker, srs: Srs) -> AsyncIterator[LiveSmtp]:
    async with running_smtp(sessionmaker, srs, postmaster=OPERATOR) as live:
        yield live


def mail(live: LiveSmtp, rcpt: str) -> list[Reply]:
    with greeted(live.host, live.port) as client:
        answers = [client.command(b"MAIL FROM:<a@sender.example>")]
        answers.append(client.command(f"RCPT TO:{rcpt}".encode()))
        if answers[-1].code == 250:
            assert client.command(b"DATA").code == 354
            client.send(BODY + b".\r\n")
            answers.append(client.reply())
        return answers


async def recipients(sessionmaker: Sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Delivery.recipient)))


@pytest.mark.parametrize(
    "rcpt", ["<postmaster>", "<Postmaster>", "<POSTMASTER>", f"<postmaster@{HOSTNAME}>"]
)
async def test_postmaster_goes_to_the_operator(
    with_postmaster: LiveSmtp, sessionmaker: Sessionmaker, rcpt: str
) -> None:
    answers = await in_thread(mail, with_postmaster, rcpt)
    assert f"{answers[1].code} {answers[1].text.decode()}" == replies.S250_RECIPIENT_OK
    assert answers[-1].code == 250
    assert await recipients(sessionmaker) == [OPERATOR]


async def test_postmaster_refused_when_no_operator_address_is_set(
    smtp_server: LiveSmtp, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(mail, smtp_server, "<postmaster>")
    assert f"{answers[1].code} {answers[1].text.decode()}" == (
        replies.S550_NO_POSTMASTER.format(address="postmaster")
    )
    assert await recipients(sessionmaker) == []


async def test_postmaster_of_another_name_is_not_ours(with_postmaster: LiveSmtp) -> None:
    answers = await in_thread(mail, with_postmaster, "<postmaster@foreign.example>")
    assert f"{answers[1].code} {answers[1].text.decode()}" == (
        replies.S550_RELAY_DENIED.format(domain="foreign.example")
    )
