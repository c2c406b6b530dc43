"""A real rspamd for tests: the Debian package's rules, one normal worker on 127.0.0.1 and a
port of its own, everything it writes under a directory of ours.

Only the stock rules come from /etc/rspamd ($CONFDIR/common.conf); the main file, the
options and the workers are ours, so no controller or proxy listens and nothing is shared
with a system rspamd. There is no network here: DNS points at a loopback port nobody
answers (every lookup fails at once), and the modules that only ask the internet (DNS
block lists, fuzzy hashes, hostname checks) are off, so a check takes milliseconds and
scores the same on every machine. A test that needs look-ups (DKIM keys, ARC) gives a
``nameserver`` of its own, such as tests/peers/dnsmasq.py's.

Compiling the rules for Hyperscan takes rspamd most of its start (seconds); the compiled
files are kept in ``cache_dir`` when given, keyed by rspamd on the rules and the CPU, so
a later run starts in about a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.processes import end_group
from tests.peers.tools import free_port, require_tool

CONFIG = """\
.include "$CONFDIR/common.conf"

options {{
    pidfile = "{root}/rspamd.pid";
    filters = "chartable,dkim,regexp";
    url_tld = "${{SHAREDIR}}/effective_tld_names.dat";
    hs_cache_dir = "{cache_dir}/";
    tempdir = "{root}";
    explicit_modules = ["settings"];
    task_timeout = 5s;
    dns {{
        nameserver = ["{nameserver}"];
        timeout = {dns_timeout};
        retransmits = 0;
    }}
}}

logging {{
    type = "console";
    level = "warning";
}}

worker "normal" {{
    bind_socket = "{host}:{port}";
    count = 1;
}}
"""

# local.d overrides: modules that would only ask the internet, or need a Redis.
OFF_MODULES = (
    "rbl",
    "surbl",
    "fuzzy_check",
    "neural",
    "hfilter",
    "asn",
    "emails",
    "phishing",
    "url_redirector",
    "rspamd_update",
    "mx_check",
    "greylist",
    "ratelimit",
    "reputation",
)

START_TIMEOUT = 120.0  # a cold Hyperscan compile on a busy two-core machine

# No proxy from the environment for a daemon on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RspamdDaemon:
    def __init__(
        self,
        root: Path,
        cache_dir: Path | None = None,
        nameserver: tuple[str, int] | None = None,
    ) -> None:
        self.root = root
        self.nameserver = nameserver
        self.cache_dir = cache_dir or root / "hyperscan"
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "rspamd.out"

    def write_config(self) -> Path:
        for name in ("local.d", "db"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for module in OFF_MODULES:
            (self.root / "local.d" / f"{module}.conf").write_text("enabled = false;\n")
        config = self.root / "rspamd.conf"
        config.write_text(
            CONFIG.format(
                root=self.root,
                cache_dir=self.cache_dir,
                host=self.host,
                port=self.port,
                nameserver="{}:{}".format(*self._nameserver()),
                # A real server on loopback still answers late on a busy machine.
                dns_timeout="0.1s" if self.nameserver is None else "2s",
            )
        )
        return config

    def _nameserver(self) -> tuple[str, int]:
        if self.nameserver is not None:
            return self.nameserver
        # A UDP port just found free: nothing answers there.
        return self.host, free_port(self.host, socket.SOCK_DGRAM)

    def args(self, config: Path) -> list[str]:
        return [
            require_tool("rspamd", "rspamd"),
            "--no-fork",
            # The tests run as root; rspamd would otherwise refuse, or need a user to drop
            # to that can read our temporary directory.
            "--insecure",
            f"--config={config}",
            f"--var=LOCAL_CONFDIR={self.root}",
            f"--var=DBDIR={self.root / 'db'}",
            f"--var=RUNDIR={self.root}",
            f"--var=LOGDIR={self.root}",
        ]

    def start(self, attempts: int = 5) -> None:
        """Start on a free port; one taken between our look and rspamd's bind is retried."""
        for _ in range(attempts):
            self.port = free_port(self.host)
            if self._start_once():
                return
            if b"Address already in use" not in self.log.read_bytes():
                raise RuntimeError(f"rspamd exited: {self.log.read_text()[-2000:]}")
        raise RuntimeError(f"rspamd found no free port in {attempts} attempts")

    def _start_once(self) -> bool:
        args = self.args(self.write_config())
        with open(self.log, "wb") as output:
            # A session of its own: the main process and its workers form one group to end.
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                end_group(process.pid, timeout=5)
                return False
            if self.answers():
                self._process = process
                return True
            time.sleep(0.1)
        self._end(process)
        raise RuntimeError(f"rspamd did not answer /ping within {START_TIMEOUT:g} s")

    def answers(self) -> bool:
        try:
            with _DIRECT.open(f"{self.url}/ping", timeout=1) as reply:
                return bool(reply.read().strip() == b"pong")
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._end(self._process)
            self._process = None

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)
        end_group(process.pid, timeout=10)


@contextlib.contextmanager
def running_rspamd(
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
    nameserver: tuple[str, int] | None = None,
) -> Iterator[str]:
    """A real rspamd for a fixture (its compiled rules kept in pytest's cache); its URL."""
    cache = getattr(pytestconfig, "cache", None)  # None with -p no:cacheprovider
    cache_dir = cache.mkdir("rspamd-hyperscan") if cache is not None else None
    daemon = RspamdDaemon(tmp_path_factory.mktemp("rspamd"), cache_dir, nameserver)
    daemon.start()
    try:
        yield daemon.url
    finally:
        daemon.stop()


def symbols(url: str, message: bytes, *, sender: str, rcpt: str) -> dict[str, Any]:
    """rspamd's symbols for ``message`` (``/checkv2``), sent as from a client outside:
    rspamd checks no DKIM or ARC of mail from a local network."""
    request = urllib.request.Request(
        f"{url}/checkv2",
        data=message,
        headers={"IP": "192.0.2.25", "From": sender, "Rcpt": rcpt},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as reply:
        found: dict[str, Any] = json.load(reply)["symbols"]
    return found
