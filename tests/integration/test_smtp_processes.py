"""`mailroute serve` with MAILROUTE_SMTP_PROCESSES=2 (app.supervisor): a real serve
process, its `python -m app.cli smtp` child on the same port (SO_REUSEPORT), and a sink
as the smarthost.

Which process takes a connection is the kernel's choice; a test that needs the child's
sessions opens them while serve is stopped (SIGSTOP): only the child can greet then.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.conftest import sqlite_url
from tests.delivery.sink import Sink
from tests.reliability.service import ALIAS, Installation, Process, prepare_database

SENDER = "alice@sender.example"
CLIENT_NAME = "client.example"
FOUND_WITHIN = 30.0  # seconds for a child to appear or go, on a loaded machine
# The worker polls every 5 s; woken through the pipe it starts at once. Each message below
# is sent just after the worker delivered the one before, so it found nothing and went
# back to sleep for a full poll: without the wake-up, this message waits ~5 s.
PROMPT_DELIVERY = 2.5
ORPHAN_EXIT = 8.0  # the child checks every second, then finishes its (no) sessions
BANNER_TIMEOUT = 1.0
ATTEMPTS = 16  # connections tried while serve is stopped; each has 1/2 to reach the child
LISTENING = "SMTP server listening on"  # each process logs it once up


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


def new_installation(directory: Path, template: Path, sink: Sink) -> Installation:
    """An installation on a fresh copy of the migrated SQLite template (the processes'
    behaviour does not depend on the database; PostgreSQL would only add start-up time)."""
    path = directory / "mailroute.db"
    shutil.copyfile(template, path)
    url = sqlite_url(path)
    prepare_database(url)
    return Installation(
        directory,
        url,
        sink.port,
        smtp_processes="2",
        inline_delivery_timeout="0",
        shutdown_timeout="10",
    )


def reap(installation: Installation) -> None:
    installation.reap()
    for pid in smtp_children_everywhere(installation):
        with contextlib.suppress(ProcessLookupError):  # it was on its way out
            os.kill(pid, signal.SIGKILL)


def start(installation: Installation) -> Process:
    """serve, answering, with its SMTP child listening too."""
    process = installation.serve()
    wait_for_log(process, LISTENING, count=2)
    return process


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, sink: Sink
) -> Iterator[tuple[Installation, Process]]:
    """One serve for the tests that leave it running (starting one takes seconds)."""
    installation = new_installation(tmp_path_factory.mktemp("shared"), sqlite_template, sink)
    try:
        yield installation, start(installation)
    finally:
        reap(installation)


@pytest.fixture
def own(
    tmp_path: Path, sqlite_template: Path, sink: Sink
) -> Iterator[tuple[Installation, Process]]:
    """A serve of the test's own, for a test that ends it."""
    installation = new_installation(tmp_path, sqlite_template, sink)
    try:
        yield installation, start(installation)
    finally:
        reap(installation)


def wait_for_log(process: Process, text: str, count: int) -> None:
    deadline = time.monotonic() + FOUND_WITHIN
    while process.output().count(text) < count:
        process.check_alive()
        assert time.monotonic() < deadline, f"{text!r} not {count} times:\n{process.output()}"
        time.sleep(0.05)


# --- processes, from /proc (proc(5)) -------------------------------------------------------


def stat(pid: int) -> tuple[str, int] | None:
    """A process's state and parent, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    found = stat(pid)
    return found is not None and found[0] != "Z"


def is_smtp_child(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[1:5] == [b"-m", b"app.cli", b"smtp", b"--wake-fd"]


def smtp_children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        state = stat(pid)
        if state is not None and state[1] == parent and state[0] != "Z" and is_smtp_child(pid):
            found.append(pid)
    return found


def smtp_children_everywhere(installation: Installation) -> list[int]:
    """Live SMTP children serving this installation's port, whatever their parent now
    (one orphaned by a failed test must not outlive it)."""
    port = str(installation.smtp_port).encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if alive(pid) and is_smtp_child(pid) and b"MAILROUTE_SMTP_PORT=" + port in environ:
            found.append(pid)
    return found


def only_child(serve: Process, timeout: float = FOUND_WITHIN) -> int:
    """serve's one SMTP child, waiting for it to be there."""
    assert serve.popen is not None
    deadline = time.monotonic() + timeout
    while True:
        children = smtp_children(serve.popen.pid)
        if len(children) == 1:
            return children[0]
        assert time.monotonic() < deadline, f"SMTP children of serve: {children}"
        time.sleep(0.05)


# --- SMTP ----------------------------------------------------------------------------------


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def greeted(port: int, count: int, stack: ExitStack) -> list[smtplib.SMTP]:
    """Of ``count`` connections opened at once, the sessions greeted within
    BANNER_TIMEOUT (closed with ``stack``); the others are closed unanswered."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    waiting, answered = set(sockets), []
    deadline = time.monotonic() + BANNER_TIMEOUT
    while waiting and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(list(waiting), [], [], left)
        waiting.difference_update(readable)
        answered.extend(readable)
    for sock in waiting:
        sock.close()
    return [session_on(sock, stack) for sock in answered]


def session_on(sock: socket.socket, stack: ExitStack) -> smtplib.SMTP:
    """smtplib on a connected socket whose greeting is waiting."""
    client = smtplib.SMTP(local_hostname=CLIENT_NAME, timeout=30)
    client.sock = sock
    stack.callback(client.close)
    code, text = client.getreply()
    assert code == 220, text
    return client


def child_sessions(serve: Process, port: int, stack: ExitStack) -> list[smtplib.SMTP]:
    """Sessions opened while serve is stopped: the SMTP child's (closed with ``stack``).
    Those the kernel gave serve wait unanswered, and are dropped."""
    assert serve.popen is not None
    with stopped(serve.popen.pid):
        return greeted(port, ATTEMPTS, stack)


def message(subject: str) -> bytes:
    return (f"From: <{SENDER}>\r\nTo: <{ALIAS}>\r\nSubject: {subject}\r\n\r\nHello.\r\n").encode()


def delivered_within(sink: Sink, subject: str, timeout: float) -> float | None:
    """Seconds until the sink holds the message with ``subject``, or None."""
    started = time.monotonic()
    marker = f"Subject: {subject}\r\n".encode()
    while time.monotonic() - started < timeout:
        if any(marker in r.content for r in list(sink.received)):
            return time.monotonic() - started
        time.sleep(0.01)
    return None


# --- tests ---------------------------------------------------------------------------------
# The first ones share one serve; those that kill its child come last, and wait for the new
# one. The last ones end serve, each its own.

Served = tuple[Installation, Process]


def test_serve_starts_one_smtp_child(shared: Served) -> None:
    _, serve = shared
    assert serve.popen is not None

    child = only_child(serve)

    state = stat(child)
    assert state is not None and state[1] == serve.popen.pid


def test_serve_smtp_child_takes_sessions_while_serve_is_stopped(shared: Served) -> None:
    installation, serve = shared
    with ExitStack() as stack:
        sessions = child_sessions(serve, installation.smtp_port, stack)

        # The kernel spread the connections: some reached the child, not all.
        assert 0 < len(sessions) < ATTEMPTS
        assert sessions[0].ehlo()[0] == 250


def test_serve_takes_sessions_while_the_child_is_stopped(shared: Served) -> None:
    installation, serve = shared
    with ExitStack() as stack:
        with stopped(only_child(serve)):
            # Only serve can greet now: it takes the rest of the spread.
            sessions = greeted(installation.smtp_port, ATTEMPTS, stack)

        assert 0 < len(sessions) < ATTEMPTS


def test_serve_delivers_mail_the_child_accepted_at_once(shared: Served, sink: Sink) -> None:
    installation, serve = shared
    timings = []
    with ExitStack() as stack:
        sessions = child_sessions(serve, installation.smtp_port, stack)
        assert len(sessions) >= 3, "too few sessions reached the child"
        for number, session in enumerate(sessions[:3]):
            subject = f"through the child {number}"
            session.sendmail(SENDER, [ALIAS], message(subject))
            timings.append(delivered_within(sink, subject, 10))

    assert all(t is not None and t < PROMPT_DELIVERY for t in timings), timings


def test_serve_smtp_answers_while_the_child_is_down(shared: Served) -> None:
    installation, serve = shared
    child = only_child(serve)
    os.kill(child, signal.SIGKILL)
    # Reaped by serve: gone with its listening socket (SYNs that met it dying were reset).
    wait_until(lambda: stat(child) is None, f"SMTP child {child} not reaped")

    with ExitStack() as stack:
        # Until the new one is up, serve alone takes every connection.
        sessions = greeted(installation.smtp_port, 8, stack)
        assert len(sessions) == 8


def test_serve_starts_a_new_child_when_one_is_killed(shared: Served) -> None:
    installation, serve = shared
    listening = serve.output().count(LISTENING)
    old = only_child(serve)
    os.kill(old, signal.SIGKILL)

    wait_until(lambda: smtp_children_of(serve) not in ([], [old]), "no new SMTP child")
    new = only_child(serve)
    wait_for_log(serve, LISTENING, count=listening + 1)
    with ExitStack() as stack:
        # The new child listens: it greets while serve is stopped.
        assert child_sessions(serve, installation.smtp_port, stack)
    assert (new != old, alive(old), serve.alive()) == (True, False, True)


def test_serve_smtp_child_exits_when_serve_is_killed(own: Served) -> None:
    _, serve = own
    child = only_child(serve)

    serve.kill9()

    wait_until(lambda: not alive(child), f"the orphaned SMTP child {child} still runs", ORPHAN_EXIT)
    assert "is gone; this SMTP process stops" in serve.output()


def test_serve_sigterm_stops_every_process(own: Served) -> None:
    installation, serve = own
    assert serve.popen is not None
    child = only_child(serve)

    serve.popen.send_signal(signal.SIGTERM)
    code = serve.popen.wait(FOUND_WITHIN)

    assert (code, alive(child)) == (0, False), serve.output()
    assert "Traceback" not in serve.output()
    assert "did not stop; killing it" not in serve.output()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", installation.smtp_port)) != 0


def smtp_children_of(serve: Process) -> list[int]:
    assert serve.popen is not None
    return smtp_children(serve.popen.pid)


def wait_until(condition: Callable[[], bool], failure: str, timeout: float = FOUND_WITHIN) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)
