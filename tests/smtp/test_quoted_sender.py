"""A sender's local part is passed on inside our SRS address and as a DSN's recipient: a
quoted one that is a plain dot-atom inside loses its quotes (RFC 5321 4.1.2: the same
mailbox); any other quoted local part is refused at MAIL (553 5.1.7), never sent on
unquoted, where its ``>`` would end the path and the rest become MAIL parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Delivery, Message
from app.smtp import replies
from tests.smtp.conftest import LiveSmtp, in_thread
from tests.smtp.raw import Reply, greeted
from tests.smtp.stored import Sessionmaker

BODY = b"From: a@sender.example\r\nSubject: quoted\r\n\r\nHello\r\n"


def mail(live: LiveSmtp, sender: str) -> list[Reply]:
    with greeted(live.host, live.port) as client:
        answers = [client.command(f"MAIL FROM:<{sender}>".encode())]
        if answers[0].code == 250:
            answers.append(client.command(b"RCPT TO:<shop@example.org>"))
            assert client.command(b"DATA").code == 354
            client.send(BODY + b".\r\n")
            answers.append(client.reply())
        return answers


@pytest.mark.parametrize(
    "sender",
    ['"a> X=Y"@victim.example', '"a b"@victim.example', '"a\\"b"@victim.example', "a..b@x.example"],
)
async def test_quoted_sender_that_is_no_dot_atom_refused_at_mail(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker, sender: str
) -> None:
    answers = await in_thread(mail, smtp_server, sender)
    assert f"{answers[0].code} {answers[0].text.decode()}" == replies.S553_SENDER_NOT_FORWARDABLE
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Message))) == []


async def test_quoted_dot_atom_sender_is_passed_on_unquoted(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(mail, smtp_server, '"alice.smith"@sender.example')
    assert [a.code for a in answers] == [250, 250, 250]
    async with sessionmaker() as session:
        [message] = await session.scalars(select(Message))
        [delivery] = await session.scalars(select(Delivery))
    assert message.mail_from == "alice.smith@sender.example"
    assert delivery.mail_from.startswith("SRS0=")
    assert delivery.mail_from.split("@")[0].endswith("=sender.example=alice.smith")
    assert '"' not in delivery.mail_from and " " not in delivery.mail_from
