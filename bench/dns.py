"""A real DNS server for a bench: dnsmasq on loopback, authoritative for the bench's zones.

``--local`` makes dnsmasq answer every other name in those domains with NXDOMAIN itself,
and ``--cache-size=0`` keeps it from remembering anything between queries: each look-up
mailroute makes is a round trip to a server, as it would be to a real one. Answers carry
a TTL (``ttl``, 300 s by default, common for SPF and DMARC records): what mailroute's own
cache may keep them for.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bench.ports import HOST

START_TIMEOUT = 10.0
# A bare query (id 1, ". IN NS"): any reply means dnsmasq listens.
_PROBE = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"


@dataclass
class DnsServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def nameserver(self) -> str:
        """``host:port`` as MAILROUTE_DNS_NAMESERVERS takes it."""
        return f"{HOST}:{self.port}"


def txt_strings(text: str) -> str:
    """``text`` as --txt-record takes it: comma-separated strings of at most 255 octets
    (RFC 1035 3.3.14), which SPF and DKIM verifiers join again."""
    return ",".join(text[i : i + 255] for i in range(0, len(text), 255))


@contextlib.contextmanager
def running_dns(
    txt: Sequence[tuple[str, str]],
    local_domains: Sequence[str],
    attempts: int = 5,
    ttl: int = 300,
) -> Iterator[DnsServer]:
    """dnsmasq serving the TXT records ``(name, value)`` on a free loopback port; stopped
    on the way out. dnsmasq also binds TCP on the port, which may be taken: retried."""
    for _ in range(attempts):
        port = free_udp_port()
        args = [dnsmasq(), "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv"]
        args += ["--no-hosts", "--bind-interfaces", f"--listen-address={HOST}", f"--port={port}"]
        args += ["--pid-file=", "--user=root", "--cache-size=0", "--log-facility=-"]
        args += [f"--local-ttl={ttl}"]
        args += [f"--local=/{domain}/" for domain in local_domains]
        args += [f"--txt-record={name},{txt_strings(value)}" for name, value in txt]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait_until_answering(process, port):
            break
        error = process.stderr.read() if process.stderr else b""
        if b"Address already in use" not in error:
            raise RuntimeError(f"dnsmasq did not start: {error.decode(errors='replace')}")
    else:
        raise RuntimeError(f"dnsmasq found no free port in {attempts} attempts")
    try:
        yield DnsServer(process, port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def dnsmasq() -> str:
    for path in (shutil.which("dnsmasq"), "/usr/sbin/dnsmasq"):
        if path and shutil.which(path):
            return path
    raise RuntimeError("the checks bench needs dnsmasq (Debian: dnsmasq-base)")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_answering(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether dnsmasq answers on ``port`` before it exits or the time is up."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            try:
                sock.sendto(_PROBE, (HOST, port))
                sock.recvfrom(512)
            except OSError:
                time.sleep(0.05)
                continue
        return True
    process.kill()
    process.wait()
    raise RuntimeError(f"dnsmasq did not answer within {START_TIMEOUT} s")
