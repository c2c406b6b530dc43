"""Our SRS bounce addresses over the wire: only a genuine one, from the null sender, is a
way back to the original sender. A forged hash of any length is refused, a genuine address
from any other sender is refused, and a client that keeps guessing lands in the penalty
box (421 4.7.0 for an hour), so brute-forcing the hash from one address is hopeless."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from app.db.models import Delivery
from app.routing.srs import Srs
from app.smtp import replies
from app.smtp.limits import PenaltyBox
from tests.smtp.conftest import LiveSmtp, in_thread, running_smtp
from tests.smtp.raw import RawSmtp, Reply, greeted
from tests.smtp.stored import Sessionmaker, count_deliveries, stored_messages

ORIGINAL = "victim@victim.example"
BOUNCE = b"From: MAILER-DAEMON@remote.example\r\nSubject: Undelivered\r\n\r\nSorry\r\n"
OTHER_CLIENT = "127.0.0.5"  # a second client address on loopback


@pytest.fixture
def penalty() -> PenaltyBox:
    return PenaltyBox()


@pytest.fixture
async def guarded(
    sessionmaker: Sessionmaker, srs: Srs, penalty: PenaltyBox
) -> AsyncIterator[LiveSmtp]:
    """An SMTP server whose Gate and handler share a penalty box, as `mailroute smtp`."""
    async with running_smtp(sessionmaker, srs, penalty=penalty) as live:
        yield live


def bounce(live: LiveSmtp, rcpt: str, sender: str = "") -> list[Reply]:
    """MAIL FROM:<sender>, RCPT TO:<rcpt>, and DATA with a bounce if RCPT was accepted."""
    with greeted(live.host, live.port) as client:
        answers = [client.command(f"MAIL FROM:<{sender}>".encode())]
        answers.append(client.command(f"RCPT TO:<{rcpt}>".encode()))
        if answers[-1].code == 250:
            assert client.command(b"DATA").code == 354
            client.send(BOUNCE + b".\r\n")
            answers.append(client.reply())
        return answers


def whole(answer: Reply) -> str:
    return f"{answer.code} {answer.text.decode()}"


def truncated(address: str, length: int) -> str:
    """``address`` with its SRS0 hash cut to ``length`` characters: what a guesser finds
    one character at a time when a shorter hash is accepted."""
    return re.sub(r"^(SRS0=)([^=]{4})=", lambda m: f"{m[1]}{m[2][:length]}=", address)


@pytest.mark.parametrize("length", [1, 2, 3])
async def test_srs_truncated_hash_refused_and_nothing_queued(
    smtp_server: LiveSmtp, srs: Srs, sessionmaker: Sessionmaker, length: int
) -> None:
    forged = truncated(srs.forward(ORIGINAL), length)
    answers = await in_thread(bounce, smtp_server, forged)
    assert whole(answers[1]) == replies.S550_BAD_SRS.format(address=forged)
    assert (await stored_messages(sessionmaker), await count_deliveries(sessionmaker)) == ([], 0)


async def test_srs_genuine_address_from_a_sender_refused(
    smtp_server: LiveSmtp, srs: Srs, sessionmaker: Sessionmaker
) -> None:
    genuine = srs.forward(ORIGINAL)
    answers = await in_thread(bounce, smtp_server, genuine, "spammer@spam.example")
    assert whole(answers[1]) == replies.S550_SRS_NOT_BOUNCE.format(address=genuine)
    assert await count_deliveries(sessionmaker) == 0


async def test_srs_genuine_bounce_returns_to_the_original_sender(
    smtp_server: LiveSmtp, srs: Srs, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(bounce, smtp_server, srs.forward(ORIGINAL).lower())
    assert [a.code for a in answers] == [250, 250, 250]
    async with sessionmaker() as session:
        deliveries = [(d.recipient, d.mail_from) for d in await session.scalars(select(Delivery))]
    assert deliveries == [(ORIGINAL, "")]


def guess(live: LiveSmtp, forgeries: list[str], source: str | None = None) -> list[Reply]:
    """One session sending each forged address in turn, until the server hangs up."""
    with greeted(live.host, live.port, source=source) as client:
        answers = [client.command(b"MAIL FROM:<>")]
        for forged in forgeries:
            try:
                answers.append(client.command(f"RCPT TO:<{forged}>".encode()))
            except ConnectionError:
                return answers
            if answers[-1].code == 421:
                return answers + client.replies_until_closed()
        return answers


def forgeries(srs: Srs, count: int) -> list[str]:
    genuine = srs.forward(ORIGINAL)
    real = genuine.split("=")[1]
    fakes = (f"{c}{c}{c}{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c * 4 != real.upper())
    return [genuine.replace(f"={real}=", f"={fake}=", 1) for fake in list(fakes)[:count]]


async def test_srs_guessing_lands_the_client_in_the_penalty_box(
    guarded: LiveSmtp, srs: Srs
) -> None:
    answers = await in_thread(guess, guarded, forgeries(srs, 8))
    codes = [a.code for a in answers[1:]]
    assert codes == [550] * 5 + [421], answers  # the fifth guess ends the session
    assert whole(answers[-1]) == replies.S421_PENALTY


async def test_srs_penalty_box_turns_the_address_away_at_connect(
    guarded: LiveSmtp, srs: Srs
) -> None:
    await in_thread(guess, guarded, forgeries(srs, 5))

    def greeting(source: str) -> Reply:
        with RawSmtp.connect(guarded.host, guarded.port, source=source) as client:
            return client.reply()

    assert whole(await in_thread(greeting, "127.0.0.1")) == replies.S421_PENALTY
    assert (await in_thread(greeting, OTHER_CLIENT)).code == 220  # only the guesser


async def test_srs_penalty_box_stops_a_genuine_bounce_from_the_guesser_too(
    guarded: LiveSmtp, srs: Srs, sessionmaker: Sessionmaker
) -> None:
    fakes = forgeries(srs, 4)
    answers = await in_thread(guess, guarded, [*fakes, fakes[0], srs.forward(ORIGINAL)])
    assert [a.code for a in answers[1:]] == [550] * 5 + [421]
    assert await count_deliveries(sessionmaker) == 0


async def test_srs_a_genuine_bounce_is_no_strike(guarded: LiveSmtp, srs: Srs) -> None:
    genuine = srs.forward(ORIGINAL)
    answers = await in_thread(guess, guarded, [genuine] * 7)
    assert [a.code for a in answers[1:]] == [250] * 7
