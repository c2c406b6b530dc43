"""Never an open relay: the classic tricks, each refused at RCPT, and nothing queued.

RFC 5321 3.6.2: an MX that is not the destination of an address refuses to relay (550
5.7.1, as Postfix's reject_unauth_destination, but with 550 as 3.6.2 suggests rather than
Postfix's 554). An address on our domain that no rule covers is unknown (550 5.1.1, as
Postfix's reject_unlisted_recipient); an address that does not parse is 501 5.1.3 (Postfix:
"Bad recipient address syntax"). Every local part on our domain, however odd (``%``, ``!``,
a quoted ``@``), is only ever looked up as a local part: it is never re-parsed as a route.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.db.engine import session_scope
from app.db.models import Delivery, Rule
from app.db.types import utcnow
from app.routing.srs import Srs
from app.services import aliases
from app.smtp import replies
from tests.conftest import HOSTNAME
from tests.smtp.conftest import SRS_SECRET, LiveSmtp, in_thread
from tests.smtp.raw import Reply, greeted
from tests.smtp.stored import Sessionmaker, count_deliveries, stored_messages

SENDER = b"MAIL FROM:<a@sender.example>"
DESTINATIONS = {"me@inbox.example", "other@inbox.example"}  # all the routed fixture knows
BODY = b"From: a@sender.example\r\nSubject: hi\r\n\r\nHello\r\n"


def relay_denied(domain: str) -> str:
    return replies.S550_RELAY_DENIED.format(domain=domain)


def unknown(address: str) -> str:
    return replies.S550_UNKNOWN_ADDRESS.format(address=address)


def expired_srs_address() -> str:
    """A bounce address we made ourselves, 30 days ago (SRS addresses live 21 days)."""
    month_ago = time.time() - 30 * 86400
    return Srs(SRS_SECRET, HOSTNAME, clock=lambda: month_ago).forward("user@foreign.example")


# The RCPT argument as sent, and the whole reply it must get.
TRICKS: dict[str, tuple[str, str]] = {
    "foreign_domain": ("<user@foreign.example>", relay_denied("foreign.example")),
    "foreign_domain_without_brackets": ("user@foreign.example", relay_denied("foreign.example")),
    "foreign_domain_upper_case": ("<USER@Foreign.EXAMPLE>", relay_denied("Foreign.EXAMPLE")),
    # Sendmail's percent hack: the local part is "user%foreign.example", nothing more.
    "percent_hack": (
        "<user%foreign.example@example.org>",
        unknown("user%foreign.example@example.org"),
    ),
    "quoted_at_in_local_part": (
        '<"user@foreign.example"@example.org>',
        unknown('"user@foreign.example"@example.org'),
    ),
    "two_at_signs": ("<user@foreign.example@example.org>", replies.S501_BAD_ADDRESS),
    "two_at_signs_ours_first": ("<user@example.org@foreign.example>", replies.S501_BAD_ADDRESS),
    # RFC 5321 4.1.1.3 and C: the route is ignored; what is left is a foreign address.
    "source_route": ("<@example.org:user@foreign.example>", relay_denied("foreign.example")),
    "source_route_two_hops": (
        "<@example.org,@mx.mailroute.example:user@foreign.example>",
        relay_denied("foreign.example"),
    ),
    "uucp_bang_path": (
        "<foreign.example!user@example.org>",
        unknown("foreign.example!user@example.org"),
    ),
    # RFC 5321 4.1.3: an address literal is never one of our domains.
    "ipv4_literal": ("<user@[127.0.0.1]>", relay_denied("[127.0.0.1]")),
    "ipv6_literal": ("<user@[IPv6:::1]>", relay_denied("[IPv6:::1]")),
    "unbalanced_open_bracket": ("<shop@example.org", replies.S501_BAD_ADDRESS),
    "unbalanced_close_bracket": ("shop@example.org>", replies.S501_BAD_ADDRESS),
    "doubled_close_bracket": ("<shop@example.org>>", replies.S501_BAD_ADDRESS),
    # RFC 5321 4.1.2: a Domain has no trailing dot (Postfix strips it; we refuse the syntax).
    "trailing_dot_ours": ("<shop@example.org.>", replies.S501_BAD_ADDRESS),
    "trailing_dot_foreign": ("<user@foreign.example.>", replies.S501_BAD_ADDRESS),
    "unknown_on_ours_mixed_case": ("<NoBody@ExAmple.ORG>", unknown("NoBody@ExAmple.ORG")),
    # Our bounce addresses take mail from <> only (tests/smtp/test_srs_relay.py).
    "srs_from_a_sender": (
        "<SRS0=abcd=XY=foreign.example=user@mx.mailroute.example>",
        replies.S550_SRS_NOT_BOUNCE.format(
            address="SRS0=abcd=XY=foreign.example=user@mx.mailroute.example"
        ),
    ),
    "disabled_alias": ("<off@example.org>", unknown("off@example.org")),
}


@pytest.fixture
async def inactive(routed: None, sessionmaker: Sessionmaker) -> dict[str, str]:
    """On top of ``routed``: off@example.org disabled, and two disposable addresses, one
    past its expiry and one that has accepted its ``max_messages``; their addresses."""
    async with session_scope(sessionmaker) as s:
        await aliases.create_alias(
            s, "example.org", local_part="off", destinations=["me@inbox.example"], enabled=False
        )
        expired = await aliases.create_alias(
            s,
            "example.org",
            destinations=["me@inbox.example"],
            expires_at=utcnow() + timedelta(hours=1),
        )
        spent = await aliases.create_alias(
            s, "example.org", destinations=["me@inbox.example"], max_messages=1
        )
        keys = {"expired": expired.local_part, "over_limit": spent.local_part}
        # Time passes and mail arrives: the states the API cannot create directly.
        await s.execute(
            update(Rule)
            .where(Rule.id == expired.id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await s.execute(update(Rule).where(Rule.id == spent.id).values(message_count=1))
    return {name: f"{key}@example.org" for name, key in keys.items()}


def transaction(
    live: LiveSmtp, rcpt: str, body: bytes = BODY, sender: bytes = SENDER
) -> list[Reply]:
    """MAIL, one RCPT with ``rcpt`` verbatim, DATA (and the message if DATA got 354)."""
    with greeted(live.host, live.port) as client:
        answers = [client.command(sender), client.command(b"RCPT TO:" + rcpt.encode())]
        answers.append(client.command(b"DATA"))
        if answers[-1].code == 354:
            client.send(body + b".\r\n")
            answers.append(client.reply())
        client.command(b"QUIT")
        return answers


def whole(answer: Reply) -> str:
    return f"{answer.code} {answer.text.decode()}"


async def assert_nothing_queued(sessionmaker: Sessionmaker) -> None:
    assert await stored_messages(sessionmaker) == []
    assert await count_deliveries(sessionmaker) == 0


@pytest.mark.parametrize(("rcpt", "expected"), TRICKS.values(), ids=TRICKS.keys())
async def test_relay_trick_refused_at_rcpt(
    smtp_server: LiveSmtp, inactive: dict[str, str], rcpt: str, expected: str
) -> None:
    answers = await in_thread(transaction, smtp_server, rcpt)
    assert whole(answers[1]) == expected


@pytest.mark.parametrize(("rcpt", "expected"), TRICKS.values(), ids=TRICKS.keys())
async def test_relay_trick_queues_nothing(
    smtp_server: LiveSmtp,
    inactive: dict[str, str],
    sessionmaker: Sessionmaker,
    rcpt: str,
    expected: str,
) -> None:
    answers = await in_thread(transaction, smtp_server, rcpt)
    assert (answers[2].code, answers[2].text[:5]) == (503, b"5.5.1")  # DATA: no recipient
    await assert_nothing_queued(sessionmaker)


REFUSED_BY_STATE: dict[str, Callable[[dict[str, str]], str]] = {
    "expired_srs": lambda _inactive: expired_srs_address(),
    "expired_disposable": lambda inactive: inactive["expired"],
    "over_limit_disposable": lambda inactive: inactive["over_limit"],
}


@pytest.mark.parametrize("address", REFUSED_BY_STATE.values(), ids=REFUSED_BY_STATE.keys())
async def test_relay_inactive_address_refused_and_nothing_queued(
    smtp_server: LiveSmtp,
    inactive: dict[str, str],
    sessionmaker: Sessionmaker,
    address: Callable[[dict[str, str]], str],
) -> None:
    rcpt = address(inactive)
    sender = b"MAIL FROM:<>" if rcpt.startswith("SRS0=") else SENDER  # a bounce
    answers = await in_thread(transaction, smtp_server, f"<{rcpt}>", BODY, sender)
    expected = replies.S550_BAD_SRS if rcpt.startswith("SRS0=") else replies.S550_UNKNOWN_ADDRESS
    assert whole(answers[1]) == expected.format(address=rcpt)
    await assert_nothing_queued(sessionmaker)


# Our own domain in any case is ours (RFC 5321 2.4: domains are case-insensitive).


async def test_relay_alias_in_mixed_case_is_accepted(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(transaction, smtp_server, "<SHOP@ExAmple.ORG>")
    assert whole(answers[1]) == replies.S250_RECIPIENT_OK
    assert answers[-1].code == 250
    async with sessionmaker() as session:
        recipients = list(await session.scalars(select(Delivery.recipient)))
    assert recipients == ["me@inbox.example"]


# With a catch-all, the odd local parts are accepted, for the catch-all's destination: that
# is delivery to our user, not relaying to the domain hidden in the local part.

CATCH_ALL_TRICKS = {
    "percent_hack": "<user%foreign.example@catchall.example>",
    "quoted_at_in_local_part": '<"user@foreign.example"@catchall.example>',
    "uucp_bang_path": "<foreign.example!user@catchall.example>",
    "mixed_case_domain": "<User%Foreign.Example@CatchAll.EXAMPLE>",
}


@pytest.mark.parametrize("rcpt", CATCH_ALL_TRICKS.values(), ids=CATCH_ALL_TRICKS.keys())
async def test_relay_trick_under_catch_all_goes_to_our_destination_only(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker, rcpt: str
) -> None:
    answers = await in_thread(transaction, smtp_server, rcpt)
    assert answers[-1].code == 250, answers
    async with sessionmaker() as session:
        recipients = set(await session.scalars(select(Delivery.recipient)))
    assert recipients == {"me@inbox.example"}
    assert recipients <= DESTINATIONS


async def test_relay_source_route_through_catch_all_is_still_refused(
    smtp_server: LiveSmtp, routed: None, sessionmaker: Sessionmaker
) -> None:
    answers = await in_thread(transaction, smtp_server, "<@catchall.example:user@foreign.example>")
    assert whole(answers[1]) == relay_denied("foreign.example")
    await assert_nothing_queued(sessionmaker)
