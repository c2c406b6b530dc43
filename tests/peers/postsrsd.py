"""A real postsrsd for tests: the SRS daemon many Postfix sites run, answering Postfix's
tcp_table protocol (``get ADDRESS`` -> ``200 RESULT``, tcp_table(5)) on loopback, so our
SRS addresses are checked against the format they must interoperate with."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, unquote

from tests.peers.tools import free_port, require_tool

START_TIMEOUT = 10.0


class Postsrsd:
    def __init__(self, secret_file: Path, domain: str) -> None:
        self.secret_file = secret_file
        self.domain = domain
        self.host = "127.0.0.1"
        self.forward_port = free_port(self.host)
        self.reverse_port = free_port(self.host)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            require_tool("postsrsd", "postsrsd"),
            f"-s{self.secret_file}",
            f"-d{self.domain}",
            f"-l{self.host}",
            f"-f{self.forward_port}",
            f"-r{self.reverse_port}",
            "-4",
        ]
        self._process = subprocess.Popen(args, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.reverse_port), timeout=1).close()
                return
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError(f"postsrsd exited: {self._process.stderr!r}") from None
                time.sleep(0.05)
        raise RuntimeError("postsrsd did not start listening")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(5)
            if self._process.stderr is not None:
                self._process.stderr.close()

    def forward(self, address: str) -> str | None:
        return self._get(self.forward_port, address)

    def reverse(self, address: str) -> str | None:
        return self._get(self.reverse_port, address)

    def _get(self, port: int, address: str) -> str | None:
        """The table's answer for ``address``, or None when it has none (5xx)."""
        with socket.create_connection((self.host, port), timeout=5) as conn:
            conn.sendall(b"get " + quote(address, safe="@=+-.").encode() + b"\n")
            reply = conn.makefile("rb").readline().decode().strip()
        code, _, value = reply.partition(" ")
        if code == "200":
            return unquote(value)
        if code == "500":
            return None
        raise AssertionError(f"postsrsd answered {reply!r}")
