"""Permanent vs temporary: replies and the exceptions aiosmtplib and sockets raise."""

from __future__ import annotations

import aiosmtplib
import pytest

from app.delivery.outcome import (
    MAX_REPLY,
    Failure,
    Outcome,
    Result,
    from_exception,
    from_failure,
    from_reply,
)

REMOTE = "mx.inbox.example[192.0.2.25]"


def test_from_reply_2xx_is_delivered() -> None:
    outcome = from_reply(250, "2.0.0 OK: queued as 12345", REMOTE)
    assert outcome == Outcome(Result.DELIVERED, "250 2.0.0 OK: queued as 12345", REMOTE, "2.0.0")
    assert outcome.delivered


def test_from_reply_4xx_is_temporary_with_its_enhanced_status() -> None:
    outcome = from_reply(451, "4.3.0 try later", REMOTE)
    assert outcome == Outcome(Result.TEMPORARY, "451 4.3.0 try later", REMOTE, "4.3.0")
    assert not outcome.permanent


def test_from_reply_5xx_is_permanent_with_its_enhanced_status() -> None:
    outcome = from_reply(550, "5.1.1 no such user", REMOTE)
    assert outcome == Outcome(Result.PERMANENT, "550 5.1.1 no such user", REMOTE, "5.1.1")
    assert outcome.permanent


def test_from_reply_without_enhanced_status_uses_the_class_of_the_code() -> None:
    assert from_reply(554, "Transaction failed", REMOTE).status == "5.0.0"
    assert from_reply(452, "Insufficient storage", REMOTE).status == "4.0.0"


def test_from_reply_text_that_only_looks_like_a_status_is_not_one() -> None:
    # "5.1" and "550." are not RFC 3463 status codes.
    assert from_reply(550, "5.1 mailbox unavailable", REMOTE).status == "5.0.0"


def test_from_reply_code_decides_over_the_text() -> None:
    # A confused server (RFC 2034 4 wants the classes to agree): the code is what counts.
    outcome = from_reply(550, "4.2.2 mailbox full", REMOTE)
    assert outcome.result is Result.PERMANENT


def test_from_reply_unexpected_code_is_temporary() -> None:
    outcome = from_reply(354, "go ahead", REMOTE)
    assert outcome.result is Result.TEMPORARY
    assert outcome.status == "4.0.0"


def test_from_exception_recipients_refused_5xx_is_permanent() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such user", "me@inbox.example")]
    )
    outcome = from_exception(refused, REMOTE)
    assert outcome == Outcome(Result.PERMANENT, "550 5.1.1 no such user", REMOTE, "5.1.1")


def test_from_exception_recipients_refused_4xx_is_temporary() -> None:
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(450, "4.2.1 mailbox busy", "me@inbox.example")]
    )
    outcome = from_exception(refused, REMOTE)
    assert outcome == Outcome(Result.TEMPORARY, "450 4.2.1 mailbox busy", REMOTE, "4.2.1")


def test_from_exception_data_refused_5xx_is_permanent() -> None:
    outcome = from_exception(aiosmtplib.SMTPDataError(554, "5.7.1 spam"), REMOTE)
    assert outcome == Outcome(Result.PERMANENT, "554 5.7.1 spam", REMOTE, "5.7.1")


def test_from_exception_sender_refused_4xx_is_temporary() -> None:
    refused = aiosmtplib.SMTPSenderRefused(451, "4.7.1 greylisted", "SRS0=x@mx.example")
    assert from_exception(refused, REMOTE).result is Result.TEMPORARY


def test_from_exception_timeout_is_temporary() -> None:
    outcome = from_exception(TimeoutError("read timed out"), REMOTE)
    assert outcome.result is Result.TEMPORARY
    assert outcome.status == "4.4.2"
    assert outcome.remote == REMOTE


def test_from_exception_aiosmtplib_read_timeout_is_temporary() -> None:
    outcome = from_exception(aiosmtplib.SMTPReadTimeoutError("Timed out waiting"), REMOTE)
    assert outcome.result is Result.TEMPORARY
    assert outcome.status == "4.4.2"


def test_from_exception_connection_refused_is_temporary() -> None:
    outcome = from_exception(ConnectionRefusedError(111, "Connection refused"), REMOTE)
    assert outcome.result is Result.TEMPORARY
    assert outcome.status == "4.4.1"
    assert "Connection refused" in outcome.reply


def test_from_exception_aiosmtplib_connect_error_is_temporary() -> None:
    error = aiosmtplib.SMTPConnectError("Error connecting to 192.0.2.25 on port 25")
    assert from_exception(error, REMOTE).result is Result.TEMPORARY


def test_from_exception_server_disconnected_is_temporary() -> None:
    error = aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
    outcome = from_exception(error, REMOTE)
    assert outcome.result is Result.TEMPORARY
    assert outcome.status == "4.4.1"


def test_from_exception_smtputf8_not_supported_is_permanent() -> None:
    error = aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
    outcome = from_exception(error, REMOTE)
    assert outcome.result is Result.PERMANENT
    assert outcome.status == "5.6.7"
    assert outcome.reply.startswith("550 5.6.7 ")


@pytest.mark.parametrize(
    ("failure", "result", "status"),
    [
        (Failure.NO_SMTPUTF8, Result.PERMANENT, "5.6.7"),
        (Failure.TLS_FAILED, Result.TEMPORARY, "4.7.5"),
        (Failure.TLS_NOT_OFFERED, Result.TEMPORARY, "4.7.5"),
        (Failure.CLEAR_CREDENTIALS, Result.TEMPORARY, "4.7.10"),
        (Failure.LOGIN_REFUSED, Result.TEMPORARY, "4.7.8"),
    ],
)
def test_from_failure_decides_each_local_failure(
    failure: Failure, result: Result, status: str
) -> None:
    outcome = from_failure(failure, REMOTE, "535 5.7.8 bad credentials")
    assert (outcome.result, outcome.status, outcome.remote) == (result, status, REMOTE)


def test_from_failure_detail_is_bounded() -> None:
    outcome = from_failure(Failure.TLS_FAILED, REMOTE, "x" * 10_000)
    assert outcome.reply.startswith("TLS handshake failed: xxx")
    assert len(outcome.reply) == MAX_REPLY
