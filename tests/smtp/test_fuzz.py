"""Random byte streams against a live session (hypothesis): pieces of valid commands mixed
with CR, LF, NUL, 8-bit bytes and long lines, all pipelined in one write.

Whatever arrives, the server keeps answering with well-formed replies (RFC 5321 4.2, with
an RFC 3463 enhanced code wherever RFC 2034 wants one), stores a message exactly when it
answered an end of data with 250, logs no traceback, and serves the next client.
Deterministic for CI (derandomize), and it keeps no example database in the repository.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import func, select

from app.db.models import Message
from tests.conftest import HOSTNAME
from tests.smtp.conftest import LiveSmtp, in_thread
from tests.smtp.raw import RawSmtp, Reply
from tests.smtp.stored import Sessionmaker

TRANSACTION = (
    b"EHLO fuzz.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<shop@example.org>\r\n"
    b"DATA\r\nSubject: fuzz\r\n\r\nhello\r\n.\r\n"
)
FRAGMENTS = [
    TRANSACTION,
    b"EHLO fuzz.example\r\n",
    b"HELO fuzz.example\r\n",
    b"MAIL FROM:<a@sender.example>\r\n",
    b"MAIL FROM:<>\r\n",
    b"MAIL FROM:<\xff@sender.example>\r\n",
    b"MAIL FROM:<a@sender.example> SIZE=999999999\r\n",
    b"RCPT TO:<shop@example.org>\r\n",
    b"RCPT TO:<team@example.org>\r\n",
    b"RCPT TO:<drop@example.org>\r\n",
    b"RCPT TO:<user@foreign.example>\r\n",
    b"RCPT TO:<@example.org:user@foreign.example>\r\n",
    b"RCPT TO:<\xfe@example.org>\r\n",
    b"RCPT TO:<shop@example.org\r\n",
    b"DATA\r\n",
    b"Subject: fuzz\r\n\r\nbody\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..\r\n",
    b"\n.\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY shop@example.org\r\n",
    b"EXPN team\r\n",
    b"HELP\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
    b"BDAT 4 LAST\r\n",
]
NOISE = [b"\r", b"\n", b"\r\n", b"\x00", b"\xff", b"\xc3", b" ", b".", b"<", b">", b":", b"@"]


def spliced(fragment: bytes, insert: bytes, at: int) -> bytes:
    """``fragment`` with ``insert`` put in at (about) ``at``: a command slightly wrong."""
    position = at % (len(fragment) + 1)
    return fragment[:position] + insert + fragment[position:]


PIECES = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.sampled_from(FRAGMENTS),  # twice: whole commands weigh double
    st.builds(
        spliced,
        st.sampled_from(FRAGMENTS),
        st.sampled_from(NOISE) | st.binary(min_size=1, max_size=8),
        st.integers(0, 200),
    ),
    st.sampled_from(NOISE),
    st.binary(max_size=24),
    st.integers(490, 1100).map(lambda n: b"L" * n),  # around both line limits
)
SENDERS = [b"a@sender.example", b"", b"\xff@sender.example", b"a\x00b@sender.example"]
RECIPIENTS = [
    b"shop@example.org",
    b"drop@example.org",
    b"user@foreign.example",
    b"\xfe@example.org",
]


def transaction(greeting: bytes, sender: bytes, recipients: list[bytes], data: bytes) -> bytes:
    rcpts = b"".join(b"RCPT TO:<" + r + b">\r\n" for r in recipients)
    return greeting + b"MAIL FROM:<" + sender + b">\r\n" + rcpts + b"DATA\r\n" + data


PIECE_LISTS = st.lists(PIECES, max_size=24).map(b"".join)
GREETINGS = st.sampled_from([b"EHLO fuzz.example\r\n", b"HELO fuzz.example\r\n", b""])
# Commands at random (most greet first, to get past the 503s), or a transaction whose
# sender and recipients vary and whose content (and whatever follows it) is random.
STREAMS = st.one_of(
    st.builds(bytes.__add__, GREETINGS, PIECE_LISTS),
    st.builds(
        transaction,
        GREETINGS,
        st.sampled_from(SENDERS),
        st.lists(st.sampled_from(RECIPIENTS), min_size=1, max_size=3),
        PIECE_LISTS,
    ),
)
# After the stream: end any DATA still open, then leave.
CLOSING = b"\r\n.\r\nRSET\r\nQUIT\r\n"

# RFC 2034 3: every reply carries an enhanced code but the greeting, 354, and EHLO/HELO's.
ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3} ")
QUEUED = re.compile(rb"^2\.0\.0 Message accepted for delivery, queue id [0-9a-f]+$")
CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def converse(live: LiveSmtp, stream: bytes) -> list[Reply]:
    """Send ``stream`` and CLOSING in one go, reading replies meanwhile; every reply."""
    client = RawSmtp.connect(live.host, live.port)
    with client:
        greeting = client.reply()
        assert greeting.code == 220, greeting

        def write() -> None:
            try:
                client.send(stream + CLOSING)
            except OSError:
                pass  # the server hung up (QUIT in the stream, too many bad commands)

        # Read while writing: replies are drained as they come, never lost to a reset.
        writer = threading.Thread(target=write)
        writer.start()
        try:
            return client.replies_until_closed()
        finally:
            writer.join()


def assert_well_formed(answer: Reply) -> None:
    for line in answer.lines:
        assert not CONTROL.search(line), answer
    if answer.code in (220, 354) or (answer.code == 250 and answer.lines[0] == HOSTNAME.encode()):
        return
    assert ENHANCED.match(answer.lines[0]), answer


def assert_no_traceback(records: list[logging.LogRecord]) -> None:
    errors = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


async def count_messages(sessionmaker: Sessionmaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


def normal_transaction(live: LiveSmtp) -> tuple[int, bytes]:
    with live.client() as client:
        client.ehlo()
        client.mail("a@sender.example")
        client.rcpt("shop@example.org")
        return client.data(b"Subject: after the fuzz\r\n\r\nstill here\r\n")


async def test_fuzz_random_streams(
    smtp_server: LiveSmtp,
    routed: None,
    sessionmaker: Sessionmaker,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # Even without an example database, hypothesis caches in ./.hypothesis: not in the repo.
    set_hypothesis_home_dir(tmp_path / "hypothesis")
    caplog.set_level(logging.INFO)
    loop = asyncio.get_running_loop()

    def stored() -> int:
        return asyncio.run_coroutine_threadsafe(count_messages(sessionmaker), loop).result(10)

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(stream=STREAMS)
    def check(stream: bytes) -> None:
        before, logged = stored(), len(caplog.records)
        answers = converse(smtp_server, stream)
        for answer in answers:
            assert_well_formed(answer)
        queued = sum(1 for a in answers if a.code == 250 and QUEUED.match(a.text))
        assert stored() - before == queued, [str(a) for a in answers]
        assert_no_traceback(caplog.records[logged:])

    await in_thread(check)

    # The server still serves a plain client, end to end.
    before = await count_messages(sessionmaker)
    code, _text = await in_thread(normal_transaction, smtp_server)
    assert code == 250
    assert await count_messages(sessionmaker) == before + 1
    assert_no_traceback(caplog.records)
