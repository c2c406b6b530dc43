"""The worker puts our signatures (app.delivery.worker.Signing) in front of each message
it sends: made once per message, whatever its destinations; a message that cannot be signed
still goes, unsigned, and the activity log says why. The signing itself is tested in
tests/signing; here a recording stand-in makes the fields."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Activity
from app.delivery.worker import DeliveryWorker
from app.errors import SigningError
from app.services import outbox
from tests.delivery.arrivals import CONTENT, DESTINATION, queue_inbound
from tests.delivery.conftest import Clock
from tests.delivery.sink import Sink
from tests.delivery.test_worker import Sessionmaker, smarthost
from tests.fakes import FakeResolver

FIELDS = b"DKIM-Signature: v=1; d=mx.mailroute.example; b=stand-in\r\n"


class Recording:
    def __init__(self, error: str | None = None) -> None:
        self.signed: list[bytes] = []
        self.checked: list[bool] = []
        self.error = error

    async def fields(self, content: bytes, *, checked: bool) -> bytes:
        self.signed.append(content)
        self.checked.append(checked)
        if self.error:
            raise SigningError(self.error)
        return FIELDS


def signing_worker(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock, signing: Recording
) -> DeliveryWorker:
    return DeliveryWorker(
        sessionmaker,
        FakeResolver(),
        smarthost(sink),
        clock=clock,
        jitter=lambda: 0.5,
        signing=signing,
    )


async def test_worker_sends_our_fields_in_front_of_the_content(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    signing = Recording()
    await queue_inbound(sessionmaker, clock)
    await signing_worker(sessionmaker, sink, clock, signing).run_once()
    assert [r.content for r in sink.received] == [FIELDS + CONTENT]
    assert signing.signed == [CONTENT]
    assert signing.checked == [False]  # stored without verdicts: no seal asked for


async def test_worker_asks_for_a_seal_when_the_message_was_checked(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    signing = Recording()
    await queue_inbound(sessionmaker, clock, verdicts={"spf": "pass", "dkim": "none"})
    await signing_worker(sessionmaker, sink, clock, signing).run_once()
    assert signing.checked == [True]


async def test_worker_signs_a_message_once_for_all_its_destinations(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    signing = Recording()
    await queue_inbound(sessionmaker, clock, destinations=(DESTINATION, "two@inbox.example"))
    await signing_worker(sessionmaker, sink, clock, signing).run_once()
    assert [r.content for r in sink.received] == [FIELDS + CONTENT] * 2
    assert len(signing.signed) == 1


async def test_worker_sends_unsigned_when_signing_fails_and_logs_why(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    signing = Recording(error="the key cannot be read")
    await queue_inbound(sessionmaker, clock)
    await signing_worker(sessionmaker, sink, clock, signing).run_once()
    assert [r.content for r in sink.received] == [CONTENT]
    async with sessionmaker() as session:
        [row] = await session.scalars(select(Activity))
    assert row.status == "forwarded"
    assert row.reply is not None and row.reply.endswith("(sent unsigned: the key cannot be read)")
    assert "sent unsigned: the key cannot be read" in caplog.text


async def test_worker_signs_our_own_mail_without_a_seal(
    sessionmaker: Sessionmaker, sink: Sink, clock: Clock
) -> None:
    signing = Recording()
    async with sessionmaker() as session, session.begin():
        await outbox.enqueue_raw(
            session,
            b"From: <postmaster@mx.mailroute.example>\r\n\r\nours\r\n",
            kind="dsn",
            mail_from="",
            recipients=["alice@sender.example"],
            message_id="<dsn@mx.mailroute.example>",
            now=clock(),
        )
    await signing_worker(sessionmaker, sink, clock, signing).run_once()
    assert [r.content[: len(FIELDS)] for r in sink.received] == [FIELDS]
    assert signing.checked == [False]
