"""The verdict latency of the inbound checks, in process: ``InboundChecks.check()`` as the
SMTP handler calls it, against the checks bench's dnsmasq.

Each sample starts the SPF check (the handler starts it at the first accepted RCPT) and
then awaits every verdict of the message, so it is the time a session waits at the end of
DATA when the client sends its text at once: the upper bound of what the checks add.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import dkim

from app.config import load_settings
from app.inbound_auth.checker import Envelope, InboundChecks
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.policy import Mode
from app.resolver import DnsResolver
from app.runtime.smtp import inbound_checks
from bench.latency import summarize
from bench.ports import HOST

MESSAGE_BYTES = 4096
DKIM_SELECTOR = "bench"
HELO_NAME = "load.example.com"
DNS_LIFETIME = 5.0  # MAILROUTE_INBOUND_AUTH_DNS_TIMEOUT's default


def _checks(nameserver_port: int, cached: bool) -> InboundChecks:
    if cached:
        settings = load_settings(
            hostname="mx.bench.example.net",
            inbound_auth="enforce",
            dns_nameservers=f"{HOST}:{nameserver_port}",
        )
        checks = inbound_checks(settings)
        assert checks is not None
        return checks
    servers = [(HOST, nameserver_port)]
    return InboundChecks(
        mode=Mode.ENFORCE,
        authserv_id="mx.bench.example.net",
        resolver=DnsResolver(servers, lifetime=DNS_LIFETIME),
        lookups=Lookups(servers, DNS_LIFETIME),
        time_limit=4 * DNS_LIFETIME,
    )


class VerdictError(RuntimeError):
    """The checks did not give the verdicts the bench's DNS records call for."""


@dataclass(frozen=True)
class DkimKey:
    private_pem: bytes
    record: str  # the TXT value at <selector>._domainkey.<domain> (RFC 6376 3.6.1)


def dkim_key(workdir: Path) -> DkimKey:
    """A 2048-bit RSA key made with openssl (the usual size of a signer's key)."""
    path = workdir / "dkim.pem"
    run: dict[str, Any] = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(path), "2048"], **run)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(path), "-pubout", "-outform", "DER"], **run
    ).stdout
    return DkimKey(path.read_bytes(), f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}")


def message(sender: str, recipient: str, key: DkimKey | None = None) -> bytes:
    """A message of about ``MESSAGE_BYTES``, DKIM-signed by the sender's domain with
    ``key`` when given."""
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: bench\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain='load.example.com')}\r\n\r\n"
    ).encode()
    line = b"X" * 78 + b"\r\n"
    content = head + line * ((MESSAGE_BYTES - len(head)) // len(line))
    if key is None:
        return content
    domain = sender.rpartition("@")[2].encode()
    signature = dkim.sign(
        content,
        DKIM_SELECTOR.encode(),
        domain,
        key.private_pem,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return bytes(signature) + content


async def measure(
    nameserver_port: int,
    content: bytes,
    *,
    expected: str,
    sender: str,
    recipient: str,
    samples: int,
    concurrency: int,
    cached: bool = True,
) -> dict[str, Any]:
    """``samples`` checks of ``content``, ``concurrency`` at a time: latency in ms, and
    the verdicts seen. Every one must be ``expected`` (e.g. "spf=pass dkim=none dmarc=pass
    accepted"), or VerdictError: the figure of checks that failed means nothing.
    ``cached``: the checks as the SMTP server builds them (app.runtime.smtp), their DNS
    answers cached; else with no cache, every look-up a round trip (a sender's first
    message)."""
    checks = _checks(nameserver_port, cached)
    seconds: list[float] = []
    seen: dict[str, int] = {}

    async def one(number: int) -> None:
        envelope = Envelope("127.0.0.1", HELO_NAME, sender, [recipient], f"bench{number}")
        started = time.perf_counter()
        spf = checks.start_spf(envelope.client_ip, envelope.helo, envelope.mail_from)
        checked = await checks.check(content, envelope, spf)
        seconds.append(time.perf_counter() - started)
        assert checked.verdicts is not None
        words = checked.verdicts
        key = f"spf={words.spf.result} dkim={words.dkim.result} dmarc={words.dmarc.result}"
        key += " accepted" if checked.judgement.accepted else " refused"
        seen[key] = seen.get(key, 0) + 1

    async def worker(numbers: Sequence[int]) -> None:
        for number in numbers:
            await one(number)

    try:
        for number in range(concurrency):  # warm up: imports, the first look-ups
            await one(-number - 1)
        if seen != {expected: concurrency}:
            raise VerdictError(f"warm-up verdicts {seen}, not {expected!r}")
        seconds.clear()
        seen.clear()
        began = time.perf_counter()
        await asyncio.gather(*(worker(range(i, samples, concurrency)) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
    finally:
        await checks.aclose()
    if seen != {expected: samples}:
        raise VerdictError(f"verdicts {seen}, not {expected!r} every time")
    return summarize(seconds) | {
        "concurrency": concurrency,
        "checks_per_s": round(samples / elapsed, 1),
        "verdicts": seen,
    }
