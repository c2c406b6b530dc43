"""A real Postfix for tests: the destination inbox mailroute relays to.

An instance of its own (config, queue, data and Maildirs under one directory, its log in
another), its master(8) run directly as a child of the tests and listening on 127.0.0.2:25
by default. It accepts mail for its virtual mailbox domains, refuses chosen addresses at
RCPT with 550 5.1.1, and delivers the rest with virtual(8) into one Maildir per domain;
``postfix_config`` and ``postfix_instance`` say what it will not do (DNS, relaying, sending).

Tests share one instance per session (``postfix``) and keep apart by taking fresh addresses
from ``Postfix.mailbox()``; ``messages()`` picks a mailbox's files out of the domain's
Maildir by the Delivered-To header virtual(8) prepends. ``postfix_tls`` is a second one
offering STARTTLS; ``postfix_factory`` makes instances configured otherwise.

Fixtures reach tests through ``pytest_plugins = ["tests.peers.postfix"]``, which registers
them once however many modules ask; importing the fixture functions into several modules
would make a second session instance that cannot bind the same address. A test module may
import this one before listing it there: PYTEST_DONT_REWRITE tells pytest that is fine (it
holds no assert statements to rewrite).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.peers import maildir
from tests.peers.dnsmasq import Zone
from tests.peers.postfix_config import Settings, maildir_name, write_instance
from tests.peers.postfix_instance import (
    NotStarted,
    master_program,
    start_master,
    stop_master,
    wait_for_greeting,
)
from tests.peers.processes import address_in_use, terminal_output
from tests.peers.tools import IN_CI, require_tool

MAILBOX_DOMAIN = "inbox.example"
UNKNOWN_MAILBOX = f"unknown@{MAILBOX_DOMAIN}"
TLS_MAILBOX_DOMAIN = "starttls.example"
# Postfix's whole replies to RCPT for an address its virtual mailbox map does not list,
# and for one in a domain it does not serve.
S550_UNKNOWN_MAILBOX = (
    "550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
)
S554_RELAY_DENIED = "554 5.7.1 <{address}>: Relay access denied"

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


class Postfix:
    """One Postfix instance: start, stop, and read what it delivered."""

    def __init__(
        self,
        root: Path,
        *,
        log_dir: Path | None = None,
        host: str = "127.0.0.2",
        port: int = 25,
        domains: Sequence[str] = (MAILBOX_DOMAIN,),
        mailboxes: Sequence[str] | None = None,
        refused: Sequence[str] = (),
        tls: bool = False,
        hostname: str | None = None,
    ) -> None:
        """An instance in ``root``, which everyone must be able to search: virtual(8)
        delivers as nobody, so not pytest's tmp_path (under a 0700 directory). Its log goes
        to ``log_dir`` (default ``root/log``), which only root needs to reach.

        ``mailboxes`` None accepts every address in ``domains`` except ``refused``; a list
        accepts those addresses alone. Others get 550 5.1.1 at RCPT. ``tls`` offers
        STARTTLS with a self-signed certificate for ``hostname`` (default ``mx.`` and the
        first domain) and ``host``."""
        domains = tuple(d.lower() for d in domains)
        self.settings = Settings(
            host=host,
            port=port,
            hostname=hostname or f"mx.{domains[0]}",
            domains=domains,
            mailboxes=None if mailboxes is None else tuple(mailboxes),
            refused=tuple(refused),
            tls=tls,
        )
        for address in (*(self.settings.mailboxes or ()), *self.settings.refused):
            if address.rpartition("@")[2].lower() not in domains:
                raise ValueError(f"{address} is not in the mailbox domains {domains}")
        self.root = root
        self.log_dir = log_dir or root / "log"
        self._programs = require_postfix()
        self._master: subprocess.Popen[bytes] | None = None
        self._laid_out = False
        self._fresh = itertools.count(1)

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def domains(self) -> tuple[str, ...]:
        return self.settings.domains

    @property
    def refused(self) -> tuple[str, ...]:
        return self.settings.refused

    @property
    def log_file(self) -> Path:
        return self.log_dir / "maillog"

    @property
    def certificate(self) -> Path | None:
        """The self-signed certificate offered with STARTTLS, for a client to trust."""
        return self.root / "tls" / "cert.pem" if self.settings.tls else None

    @property
    def running(self) -> bool:
        return self._master is not None and self._master.poll() is None

    @property
    def pid(self) -> int | None:
        """The master's process id, which is also its process group's."""
        return None if self._master is None else self._master.pid

    def mailbox(self, name: str = "user", domain: str | None = None) -> str:
        """A fresh address no other test has used, e.g. ``user-7@inbox.example``."""
        if self.settings.mailboxes is not None:
            raise ValueError("fresh mailboxes need an instance that accepts any address")
        return f"{name}-{next(self._fresh)}@{domain or self.domains[0]}"

    def zone(self) -> Zone:
        """DNS records for dnsmasq that route mail for the mailbox domains here by MX."""
        return Zone(
            mx=[(d, self.settings.hostname, 10) for d in self.domains],
            hosts=[(self.settings.hostname, self.host)],
            local_domains=list(self.domains),
        )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the master and wait for the 220 greeting; a no-op when running."""
        if self.running:
            return
        if not self._laid_out:
            write_instance(self.root, self.log_dir, self.settings)
            self._laid_out = True
        if address_in_use(self.host, self.port):
            raise RuntimeError(
                f"{self.host}:{self.port} is taken (a Postfix left from an interrupted run?"
                f" see `ss -ltnp 'sport = :{self.port}'`)"
            )
        self._master = start_master(Path(self._programs["master"]), self.root, self.log_dir)
        try:
            wait_for_greeting(self._master, self.host, self.port, timeout)
        except NotStarted as exc:
            self._fail_start(str(exc))

    def _fail_start(self, what: str) -> NoReturn:
        self.stop()
        check = terminal_output([self._programs["postfix"], "-c", str(self.root / "etc"), "check"])
        raise RuntimeError(
            f"Postfix on {self.host}:{self.port}: {what}\n"
            # master(8) logs its own start-up errors to syslog only.
            f"`postfix -c {self.root / 'etc'} check` says: {check.strip() or 'nothing'}\n"
            f"{self.tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the master and every process it started; Maildirs and queue stay."""
        if self._master is None:
            return
        master, self._master = self._master, None
        stop_master(master, timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def messages(self, mailbox: str) -> list[bytes]:
        """Messages delivered to ``mailbox``, oldest first, each its Maildir file: the
        Return-Path, Delivered-To and Received headers Postfix adds, then the message as
        sent, its CRLF line ends stored as LF."""
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
        """The Maildir of ``mailbox``'s domain, shared by its every mailbox."""
        if mailbox.rpartition("@")[2].lower() not in self.domains:
            raise ValueError(f"{mailbox} is not in the mailbox domains {self.domains}")
        return self.root / "mail" / maildir_name(mailbox)

    def tail(self, lines: int = 30) -> str:
        """The end of Postfix's log, for failure messages."""
        text = ""
        for path in (self.log_dir / "master.out", self.log_file):
            if path.exists():
                text += path.read_text(errors="replace")
        return f"last lines of {self.log_file}:\n" + "\n".join(text.splitlines()[-lines:])


def require_postfix() -> dict[str, str]:
    """Postfix's programs; skip on a laptop without Postfix or root, fail in CI."""
    postfix = require_tool("postfix", "postfix")
    if os.geteuid() != 0:
        message = "Postfix tests need root: master(8) runs its daemons as other users"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    master = master_program(Path(postfix).with_name("postconf"))
    return {"postfix": postfix, "master": str(master)}


@contextmanager
def running_postfix(log_dir: Path | None = None, **options: Any) -> Iterator[Postfix]:
    """A started instance in a fresh directory, stopped and removed afterwards (its log
    stays if ``log_dir`` is elsewhere)."""
    require_postfix()
    root = Path(tempfile.mkdtemp(prefix="mailroute-postfix-"))
    root.chmod(0o711)
    try:
        server = Postfix(root, log_dir=log_dir, **options)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postfix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postfix]:
    log_dir = tmp_path_factory.mktemp("postfix")
    with running_postfix(log_dir, refused=[UNKNOWN_MAILBOX]) as server:
        yield server


@pytest.fixture
def postfix(postfix_server: Postfix) -> Iterator[Postfix]:
    """The session's Postfix on 127.0.0.2:25, taking any address at inbox.example but
    unknown@; running when each test starts, and started again if a test stopped it."""
    postfix_server.start()
    yield postfix_server
    postfix_server.start()


@pytest.fixture(scope="session")
def postfix_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postfix]:
    log_dir = tmp_path_factory.mktemp("postfix-tls")
    refused = [f"unknown@{TLS_MAILBOX_DOMAIN}"]
    with running_postfix(
        log_dir, host="127.0.0.3", domains=[TLS_MAILBOX_DOMAIN], refused=refused, tls=True
    ) as server:
        yield server


@pytest.fixture
def postfix_tls(postfix_tls_server: Postfix) -> Iterator[Postfix]:
    """Like ``postfix``, on 127.0.0.3:25 for starttls.example, offering STARTTLS."""
    postfix_tls_server.start()
    yield postfix_tls_server
    postfix_tls_server.start()


_SPARE_HOSTS = itertools.cycle(f"127.0.0.{n}" for n in range(10, 255))


@pytest.fixture
def postfix_factory(tmp_path: Path) -> Iterator[Callable[..., Postfix]]:
    """Start instances configured as a test needs (``Postfix`` keyword arguments), each on
    a loopback address of its own from 127.0.0.10 on unless given ``host``."""
    with ExitStack() as stack:

        def make(**options: Any) -> Postfix:
            options.setdefault("host", next(_SPARE_HOSTS))
            log_dir = tmp_path / f"postfix-{options['host']}-{options.get('port', 25)}"
            return stack.enter_context(running_postfix(log_dir, **options))

        yield make
