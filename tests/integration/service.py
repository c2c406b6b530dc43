"""One mailroute installation as an operator has it: its environment, its management
commands, and its `serve` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import HOSTNAME
from tests.peers.dnsmasq import Dnsmasq
from tests.peers.processes import greeting
from tests.peers.tools import free_port

MAILROUTE = Path(sys.executable).with_name("mailroute")
START_TIMEOUT = 60.0  # migrations and imports on a loaded machine
STOP_TIMEOUT = 30.0


class Service:
    """The environment of one mailroute installation, and its `serve` process."""

    def __init__(self, directory: Path, dnsmasq: Dnsmasq) -> None:
        self.directory = directory
        self.smtp_port = free_port()
        self.api_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROUTE_")}
        self.env |= {
            "MAILROUTE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'mailroute.db'}",
            "MAILROUTE_SMTP_PORT": str(self.smtp_port),
            "MAILROUTE_API_PORT": str(self.api_port),
            "MAILROUTE_DNS_NAMESERVERS": f"{dnsmasq.host}:{dnsmasq.port}",
            "MAILROUTE_HOSTNAME": HOSTNAME,
            "MAILROUTE_DELIVERY_PORT": "25",
            # Postfix listens on 127.0.0.2 and 127.0.0.3: loopback, refused unless allowed.
            "MAILROUTE_DELIVERY_ALLOWED_NETWORKS": "127.0.0.0/8",
            # Most senders here publish no SPF or DKIM; tests of the checks turn them on.
            "MAILROUTE_INBOUND_AUTH": "off",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "serve.log"

    def run(self, *args: str) -> str:
        """A management command; its standard output."""
        result = subprocess.run(
            [str(MAILROUTE), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.directory,
            timeout=60,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def serve(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(MAILROUTE), "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.directory,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (self._api_answers() and greeting("127.0.0.1", self.smtp_port)):
            assert self.process.poll() is None, f"serve exited:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"serve not up:\n{self.log.read_text()}"
            time.sleep(0.1)

    def _api_answers(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """Whatever a failed test left running, gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
