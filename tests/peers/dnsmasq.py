"""A real DNS server for tests: dnsmasq on 127.0.0.1 and a port of its own, authoritative
(``--local``) for the test zones, so unknown names there get NXDOMAIN."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field

from tests.peers.tools import free_port, require_tool


@dataclass
class Zone:
    """Records to serve. Each domain named in one is answered authoritatively."""

    mx: list[tuple[str, str, int]] = field(default_factory=list)  # (name, exchange, preference)
    txt: list[tuple[str, str]] = field(default_factory=list)
    hosts: list[tuple[str, str]] = field(default_factory=list)  # (name, IPv4)
    local_domains: list[str] = field(default_factory=list)
    ttl: int = 0  # of every answer; 0 (dnsmasq's default): nobody caches them


class Dnsmasq:
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.host = "127.0.0.1"
        self.port = free_port(self.host, socket.SOCK_DGRAM)
        self._process: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        args = [
            require_tool("dnsmasq", "dnsmasq-base"),
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={self.host}",
            f"--port={self.port}",
            "--pid-file=",
            "--user=root",
            "--cache-size=0",
            "--log-facility=-",
        ]
        args += [f"--local-ttl={self.zone.ttl}"]
        args += [f"--local=/{d}/" for d in self.zone.local_domains]
        args += [f"--mx-host={n},{x or '.'},{p}" for n, x, p in self.zone.mx]
        args += [f"--txt-record={n},{t}" for n, t in self.zone.txt]
        args += [f"--host-record={n},{ip}" for n, ip in self.zone.hosts]
        return args

    def start(self, attempts: int = 5) -> None:
        """Start on a free port; dnsmasq also listens on TCP, where the UDP-free port we
        picked may be taken, so a port clash is retried on another port."""
        for _ in range(attempts):
            error = self._start_once()
            if error is None:
                return
            if b"Address already in use" not in error:
                raise RuntimeError(f"dnsmasq exited: {error!r}")
            self.port = free_port(self.host, socket.SOCK_DGRAM)
        raise RuntimeError(f"dnsmasq found no free port in {attempts} attempts")

    def _start_once(self) -> bytes | None:
        process = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert process.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                error = process.stderr.read()
                process.stderr.close()
                return error
            if self._answers():
                self._process = process
                return None
            time.sleep(0.05)
        process.kill()
        process.wait()
        process.stderr.close()
        raise RuntimeError("dnsmasq did not answer within 10 s")

    def _answers(self) -> bool:
        # A bare DNS query (id 1, one question: ". IN NS"); any reply means it listens.
        query = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.sendto(query, (self.host, self.port))
                sock.recvfrom(512)
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None
