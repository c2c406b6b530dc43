"""SIGTERM to a real `mailroute serve`: new sessions hear 421 4.3.2, an open session
finishes its message, the process exits within MAILROUTE_SHUTDOWN_TIMEOUT, and what was
accepted is delivered (after a restart, if the worker had stopped first)."""

from __future__ import annotations

import contextlib
import signal
import smtplib
import time
from pathlib import Path

import pytest

from app.smtp import replies
from tests.conftest import sqlite_url
from tests.delivery.sink import Sink
from tests.reliability.conftest import InstallationFactory
from tests.reliability.load import CLIENT_NAME, SENDER, load_ids, load_message
from tests.reliability.service import ALIAS, Installation, Process, prepare_database

SHUTDOWN_TIMEOUT = 4.0
EXIT_MARGIN = 5.0  # beyond the shutdown timeout: closing the API, the engine, the loop


def new_session_reply(service: Installation) -> str:
    """The greeting a new client gets, as "code text"."""
    try:
        with smtplib.SMTP("127.0.0.1", service.smtp_port, CLIENT_NAME, timeout=10) as client:
            code, text = client.noop()
            return "220 greeted" if code == 250 else f"{code} {text.decode()}"
    except smtplib.SMTPConnectError as exc:
        return f"{exc.smtp_code} {exc.smtp_error.decode()}"
    except OSError as exc:
        return f"no greeting: {exc!r}"


def wait_refusing(service: Installation, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while (reply := new_session_reply(service)) == "220 greeted":
        assert time.monotonic() < deadline, "still greeting new sessions after SIGTERM"
        time.sleep(0.05)
    return reply


def sigterm(server: Process) -> float:
    assert server.popen is not None
    server.popen.send_signal(signal.SIGTERM)
    return time.monotonic()


def started(
    tmp_path: Path, sqlite_template: Path, installation: InstallationFactory
) -> tuple[Installation, Process]:
    url = sqlite_url(tmp_path / "mailroute.db")
    (tmp_path / "mailroute.db").write_bytes(sqlite_template.read_bytes())
    prepare_database(url)
    service = installation(url, shutdown_timeout=str(SHUTDOWN_TIMEOUT), inline_delivery_timeout="0")
    return service, service.serve()


def test_serve_sigterm_open_session_finishes_new_ones_hear_421(
    tmp_path: Path, sqlite_template: Path, installation: InstallationFactory, sink: Sink
) -> None:
    service, server = started(tmp_path, sqlite_template, installation)
    with contextlib.closing(
        smtplib.SMTP("127.0.0.1", service.smtp_port, CLIENT_NAME, timeout=10)
    ) as client:
        client.ehlo()
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(ALIAS)[0] == 250

        signalled = sigterm(server)
        refusal = wait_refusing(service)
        code, _ = client.data(load_message(7, ALIAS))
        client.quit()
    assert server.popen is not None
    status = server.popen.wait(SHUTDOWN_TIMEOUT + EXIT_MARGIN)
    exited = time.monotonic() - signalled

    assert refusal == replies.S421_SHUTTING_DOWN
    assert code == 250
    assert status == 0, server.output()
    # The open session ended well before the timeout: the server need not wait it out.
    assert exited < SHUTDOWN_TIMEOUT, f"took {exited:.1f} s"
    server.start()
    service.wait_ready(server)
    assert load_ids(sink.wait_for(1, timeout=15)) == {7: 1}


def test_serve_sigterm_idle_session_is_closed_after_shutdown_timeout(
    tmp_path: Path, sqlite_template: Path, installation: InstallationFactory
) -> None:
    service, server = started(tmp_path, sqlite_template, installation)
    with contextlib.closing(
        smtplib.SMTP("127.0.0.1", service.smtp_port, CLIENT_NAME, timeout=30)
    ) as client:
        client.ehlo()

        signalled = sigterm(server)
        assert server.popen is not None
        status = server.popen.wait(SHUTDOWN_TIMEOUT + EXIT_MARGIN)
        exited = time.monotonic() - signalled

        assert status == 0, server.output()
        assert SHUTDOWN_TIMEOUT - 0.5 < exited < SHUTDOWN_TIMEOUT + EXIT_MARGIN
        with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
            client.noop()
