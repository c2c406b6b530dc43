"""A real Postfix for tests: the destination inbox mailroute relays to.

An instance of its own (config, queue, data, Maildirs and log under one directory), its
master(8) run directly as a child of the tests and listening on 127.0.0.2:25 by default.
It accepts mail for its virtual mailbox domains, refuses chosen addresses at RCPT with
550 5.1.1, and delivers the rest with virtual(8) into one Maildir per domain; see
``postfix_config`` for what it will not do (DNS, relaying, sending).

Tests share one instance per session (``postfix``) and keep apart by taking fresh addresses
from ``Postfix.mailbox()``; ``messages()`` picks a mailbox's files out of the domain's
Maildir by the Delivered-To header virtual(8) prepends. ``postfix_tls`` is a second one
offering STARTTLS; ``postfix_factory`` makes instances configured otherwise.

Fixtures reach tests through ``pytest_plugins = ["tests.peers.postfix"]``, which registers
them once however many modules ask; importing the fixture functions into several modules
would make a second session instance that cannot bind the same address.
"""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.peers import maildir
from tests.peers.dnsmasq import Zone
from tests.peers.postfix_config import (
    QUEUE_DIRECTORIES,
    mailbox_map,
    maildir_name,
    main_cf,
    master_cf,
)
from tests.peers.tools import IN_CI, require_tool

MAILBOX_DOMAIN = "inbox.example"
UNKNOWN_MAILBOX = f"unknown@{MAILBOX_DOMAIN}"
TLS_MAILBOX_DOMAIN = "starttls.example"
# Postfix's whole reply to RCPT for an address its virtual mailbox map does not list.
S550_UNKNOWN_MAILBOX = (
    "550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
)
S554_RELAY_DENIED = "554 5.7.1 <{address}>: Relay access denied"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class Postfix:
    """One Postfix instance rooted at ``root``, which must be searchable by everyone: virtual(8)
    delivers as ``nobody`` (it refuses root), so pytest's 0700 tmp_path will not do."""

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.2",
        port: int = 25,
        domains: Sequence[str] = (MAILBOX_DOMAIN,),
        mailboxes: Sequence[str] | None = None,
        refused: Sequence[str] = (),
        tls: bool = False,
        hostname: str | None = None,
    ) -> None:
        """``mailboxes`` None accepts every address in ``domains`` except ``refused``;
        a list accepts just those addresses. Refused addresses get 550 5.1.1 at RCPT."""
        self.root = root
        self.host = host
        self.port = port
        self.domains = tuple(d.lower() for d in domains)
        self.mailboxes = None if mailboxes is None else tuple(mailboxes)
        self.refused = tuple(refused)
        self.tls = tls
        self.hostname = hostname or f"mx.{self.domains[0]}"
        for address in (*(self.mailboxes or ()), *self.refused):
            if address.rpartition("@")[2].lower() not in self.domains:
                raise ValueError(f"{address} is not in the mailbox domains {self.domains}")
        self._programs = require_postfix()
        self._master: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._fresh = itertools.count(1)

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "maillog"

    @property
    def certificate(self) -> Path | None:
        """The self-signed certificate offered with STARTTLS, to trust it in a client."""
        return self.root / "tls" / "cert.pem" if self.tls else None

    @property
    def running(self) -> bool:
        return self._master is not None and self._master.poll() is None

    @property
    def pid(self) -> int | None:
        """The master's process id, which is also its process group's."""
        return None if self._master is None else self._master.pid

    def mailbox(self, name: str = "user", domain: str | None = None) -> str:
        """A fresh address no other test has used, e.g. ``user-7@inbox.example``."""
        if self.mailboxes is not None:
            raise ValueError("fresh mailboxes need an instance that accepts any address")
        return f"{name}-{next(self._fresh)}@{domain or self.domains[0]}"

    def zone(self) -> Zone:
        """DNS records for dnsmasq routing mail for the mailbox domains here (by MX)."""
        return Zone(
            mx=[(d, self.hostname, 10) for d in self.domains],
            hosts=[(self.hostname, self.host)],
            local_domains=list(self.domains),
        )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the master and wait for the 220 greeting; no-op when running."""
        if self.running:
            return
        self._prepare()
        if _greeting(self.host, self.port) is not None:
            raise RuntimeError(
                f"something already answers on {self.host}:{self.port} (a Postfix left over"
                f" from an interrupted run?); see `ss -ltnp 'sport = :{self.port}'`"
            )
        with open(self.root / "log" / "master.out", "ab") as output:
            self._master = subprocess.Popen(
                # -d: stay in the foreground, keep stderr for errors before logging is up.
                [self._programs["master"], "-c", str(self.root / "etc"), "-d"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while (greeting := _greeting(self.host, self.port)) is None:
            if not self.running or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Postfix did not start on {self.host}:{self.port}\n{self.tail()}"
                )
            time.sleep(0.05)
        if not greeting.startswith(b"220 "):
            self.stop()
            raise RuntimeError(f"Postfix greeted with {greeting!r}\n{self.tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the master and every process it started; Maildirs and queue stay."""
        if self._master is None:
            return
        master, self._master = self._master, None
        # master(8) passes SIGTERM on to its process group, then exits.
        master.terminate()
        try:
            master.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait(timeout)
        if not _wait_until_gone(master.pid, timeout):
            os.killpg(master.pid, signal.SIGKILL)
            if not _wait_until_gone(master.pid, timeout):
                raise RuntimeError(f"Postfix processes left: {processes_in_group(master.pid)}")

    def restart(self) -> None:
        self.stop()
        self.start()

    def messages(self, mailbox: str) -> list[bytes]:
        """Messages delivered to ``mailbox``, oldest first, each as its Maildir file: the
        Return-Path, Delivered-To and Received headers Postfix adds, then the bytes sent
        with CRLF turned into LF."""
        wanted = mailbox.casefold()
        return [
            message
            for message in map(Path.read_bytes, maildir.delivered_files(self.maildir(mailbox)))
            if (maildir.header(message, "Delivered-To") or "").casefold() == wanted
        ]

    def wait_for(self, mailbox: str, count: int = 1, timeout: float = 10.0) -> list[bytes]:
        """Poll until ``mailbox`` holds at least ``count`` messages; return them all."""
        deadline = time.monotonic() + timeout
        while len(found := self.messages(mailbox)) < count:
            if time.monotonic() > deadline:
                files = maildir.delivered_files(self.maildir(mailbox))
                held = "\n".join(f"  {maildir.summary(f.read_bytes())}" for f in files)
                raise AssertionError(
                    f"{mailbox}: {len(found)} of {count} message(s) after {timeout} s;"
                    f" {self.maildir(mailbox)} holds {len(files)}:\n{held or '  nothing'}\n"
                    f"{self.tail()}"
                )
            time.sleep(0.05)
        return found

    def maildir(self, mailbox: str) -> Path:
        return self.root / "mail" / maildir_name(mailbox)

    def tail(self, lines: int = 30) -> str:
        """The end of Postfix's log, for failure messages."""
        text = ""
        for path in (self.root / "log" / "master.out", self.log_file):
            if path.exists():
                text += path.read_text(errors="replace")
        return f"last lines of {self.log_file}:\n" + "\n".join(text.splitlines()[-lines:])

    def _prepare(self) -> None:
        if self._prepared:
            return
        postfix = pwd.getpwnam("postfix")
        nobody = pwd.getpwnam("nobody")
        for name in ("etc", "log", "tls", "data", "queue", "mail"):
            (self.root / name).mkdir(mode=0o755, exist_ok=True)
        os.chown(self.root / "data", postfix.pw_uid, -1)
        os.chmod(self.root / "data", 0o700)
        postdrop = grp.getgrnam("postdrop").gr_gid
        for name, owned, setgid_group, mode in QUEUE_DIRECTORIES:
            path = self.root / "queue" / name
            path.mkdir(mode=mode, exist_ok=True)
            os.chown(path, postfix.pw_uid if owned else 0, postdrop if setgid_group else 0)
            os.chmod(path, mode)
        for domain in self.domains:
            maildir.create_maildir(self.root / "mail" / domain, nobody.pw_uid, nobody.pw_gid)
        etc = self.root / "etc"
        (etc / "main.cf").write_text(
            main_cf(
                self.root,
                hostname=self.hostname,
                domains=self.domains,
                uid=nobody.pw_uid,
                gid=nobody.pw_gid,
                tls=self.tls,
            )
        )
        (etc / "master.cf").write_text(master_cf(self.host, self.port))
        (etc / "mailboxes.regexp").write_text(
            mailbox_map(self.domains, self.mailboxes, self.refused)
        )
        if self.tls:
            self._make_certificate()
        self._prepared = True

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                require_tool("openssl", "openssl"),
                *("req", "-x509", "-nodes", "-days", "2", "-newkey", "ec"),
                *("-pkeyopt", "ec_paramgen_curve:prime256v1"),
                *("-keyout", str(self.root / "tls" / "key.pem")),
                *("-out", str(self.root / "tls" / "cert.pem")),
                *("-subj", f"/CN={self.hostname}"),
                *("-addext", f"subjectAltName=DNS:{self.hostname},IP:{self.host}"),
            ],
            check=True,
            capture_output=True,
        )


def require_postfix() -> dict[str, str]:
    """Postfix's programs; skip on a laptop without Postfix or root, fail in CI."""
    postfix = require_tool("postfix", "postfix")
    if os.geteuid() != 0:
        message = "Postfix tests need root: master(8) runs its daemons as other users"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    postconf = Path(postfix).with_name("postconf")
    directory = subprocess.run(
        [str(postconf), "-dh", "daemon_directory"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"postfix": postfix, "master": str(Path(directory) / "master")}


def processes_in_group(group: int) -> list[int]:
    """Live (not zombie) processes in process group ``group``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(stat.parent.name))
    return found


def _wait_until_gone(group: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while processes_in_group(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _greeting(host: str, port: int) -> bytes | None:
    """The first line a server on ``host:port`` sends, or None if nothing listens."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            reader = sock.makefile("rb")
            line = reader.readline()
            sock.sendall(b"QUIT\r\n")
            reader.readline()
            return line
    except OSError:
        return None


@contextmanager
def running_postfix(**options: Any) -> Iterator[Postfix]:
    """A started instance in a fresh directory, stopped and removed afterwards."""
    require_postfix()
    root = Path(tempfile.mkdtemp(prefix="mailroute-postfix-"))
    root.chmod(0o711)
    server = Postfix(root, **options)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postfix_server() -> Iterator[Postfix]:
    with running_postfix(refused=[UNKNOWN_MAILBOX]) as server:
        yield server


@pytest.fixture
def postfix(postfix_server: Postfix) -> Iterator[Postfix]:
    """The session's Postfix on 127.0.0.2:25, accepting any address at inbox.example but
    unknown@; running at the start of each test, and again after it if the test stopped it."""
    postfix_server.start()
    yield postfix_server
    postfix_server.start()


@pytest.fixture(scope="session")
def postfix_tls_server() -> Iterator[Postfix]:
    options = {"domains": [TLS_MAILBOX_DOMAIN], "refused": [f"unknown@{TLS_MAILBOX_DOMAIN}"]}
    with running_postfix(host="127.0.0.3", tls=True, **options) as server:
        yield server


@pytest.fixture
def postfix_tls(postfix_tls_server: Postfix) -> Iterator[Postfix]:
    """Like ``postfix`` on 127.0.0.3:25 for starttls.example, offering STARTTLS."""
    postfix_tls_server.start()
    yield postfix_tls_server
    postfix_tls_server.start()


_SPARE_HOSTS = itertools.cycle(f"127.0.0.{n}" for n in range(10, 255))


@pytest.fixture
def postfix_factory() -> Iterator[Callable[..., Postfix]]:
    """Start instances configured as a test needs (``Postfix`` keyword arguments); each
    listens on its own loopback address from 127.0.0.10 on unless given ``host``."""
    with ExitStack() as stack:

        def make(**options: Any) -> Postfix:
            options.setdefault("host", next(_SPARE_HOSTS))
            return stack.enter_context(running_postfix(**options))

        yield make
