"""What our DKIM signature and ARC seal cost (issue 14): forwarding throughput with
signing off and on side by side, the proof that the copies were signed and sealed, and the
time ``Signer.fields`` takes in process.

Per database, two ``mailroute serve`` enforce the inbound checks (the seal needs them:
it carries their results), relaying to one smtp-sink, with the checks part's machinery
(``turns.py``): "off" with ``MAILROUTE_DKIM_SIGN=false`` and ``MAILROUTE_ARC_SEAL=false``,
"on" with both true and the 2048-bit RSA key the bench makes (``MAILROUTE_DKIM_KEY_FILE``,
selector ``benchsign``, d= ``sign.bench.example``). One dnsmasq publishes the sender's SPF
and DMARC and, for ours, the records ``mailroute dkim show`` prints. A cell reports the
median forwarded/s of each and the ratio on/off.

smtp-sink throws every message away, so the proof comes after the throughput rounds:
each server is started again on its database, relaying to a capture (an aiosmtpd sink in
this process), and sent one message. The part fails unless the "on" copy carries a
DKIM-Signature of ours and an ARC set that dkimpy verifies against the published
records, and the "off" copy neither.

Then, in process: ``Signer.fields`` (the DKIM signature and the ARC set, as the worker
calls it in a thread) for a 4 KB message as the queue stores it, and for a 25 MiB one,
with its peak memory (tracemalloc).
"""

from __future__ import annotations

import logging
import re
import smtplib
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dkim
import dns.resolver
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.inbound_auth.headers import authentication_results
from app.inbound_auth.verdicts import Dmarc, Spf, Verdicts
from app.message import received_header
from app.signing.keys import load_pem
from app.signing.sign import Signer
from bench import bigmail, load, service, turns, verdicts
from bench.context import Context
from bench.dns import running_dns
from bench.latency import summarize
from bench.ports import HOST, free_port
from bench.sink import running_sink

log = logging.getLogger(__name__)

MODES = ("off", "on")
SENDER_DOMAIN = "sender.bench.example"
SENDER = f"bench@{SENDER_DOMAIN}"
SIGNING_DOMAIN = "sign.bench.example"
SELECTOR = "benchsign"
HOSTNAME = "mx.bench.example.net"  # service.settings_env's: our authserv-id
SMALL_SAMPLES = 500
LARGE_SAMPLES = 3
LARGE_BYTES = 25 * bigmail.MIB
CAPTURE_TIMEOUT = 60.0
DnsFunc = Callable[..., bytes | None]


class NotSigned(RuntimeError):
    """A forwarded copy lacks our DKIM signature or ARC set, or has one it should not,
    or one that does not verify."""


def run(ctx: Context) -> dict[str, Any]:
    key_dir = ctx.workdir / "key"
    key_dir.mkdir()
    verdicts.dkim_key(key_dir)  # writes key_dir / "dkim.pem"
    key_file = key_dir / "dkim.pem"
    pair = turns.Pair(turns.prepare(ctx, server_envs(key_file)))
    records = [
        (SENDER_DOMAIN, "v=spf1 ip4:127.0.0.0/8 -all"),
        (f"_dmarc.{SENDER_DOMAIN}", "v=DMARC1; p=reject"),
        *published_records(pair.prepared["on"]),
    ]
    with running_dns(records, local_domains=[SENDER_DOMAIN, SIGNING_DOMAIN]) as dns_server:
        for ready in pair.prepared.values():
            ready.env["MAILROUTE_DNS_NAMESERVERS"] = dns_server.nameserver
        with ExitStack() as stack:
            sink = stack.enter_context(running_sink())
            turns.start(stack, pair, sink, SENDER)
            turns.measure_cells(ctx, sink, pair, SENDER)
            ctx.emit("checked", turns.confirm_checked(pair, checking=MODES))
        ctx.emit("signed", confirm_signed(pair, dnsfunc(dns_server.port)))
    # The servers are gone: the signing in this process has the machine to itself.
    return {"messages_per_cell": ctx.options.messages, "signer": signer_cost(key_file)}


def server_envs(key_file: Path) -> dict[str, dict[str, str]]:
    checks = {"MAILROUTE_INBOUND_AUTH": "enforce"}
    return {
        "off": checks | {"MAILROUTE_DKIM_SIGN": "false", "MAILROUTE_ARC_SEAL": "false"},
        "on": checks
        | {
            "MAILROUTE_DKIM_SIGN": "true",
            "MAILROUTE_ARC_SEAL": "true",
            "MAILROUTE_DKIM_KEY_FILE": str(key_file),
            "MAILROUTE_DKIM_SELECTOR": SELECTOR,
            "MAILROUTE_SIGNING_DOMAIN": SIGNING_DOMAIN,
        },
    }


def published_records(ready: turns.Prepared) -> list[tuple[str, str]]:
    """What ``mailroute dkim show`` says to publish: ``(name, TXT value)`` pairs."""
    env = service.settings_env(ready.url, ready.env)
    output = service.mailroute_command(["dkim", "show"], env, ready.workdir)
    records = []
    for line in output.splitlines():
        name, kind, value = line.split(None, 2) if not line.startswith("#") else ("", "", "")
        if kind == "TXT":
            records.append((name.rstrip("."), value))
    if [name for name, _ in records] != [f"{SELECTOR}._domainkey.{SIGNING_DOMAIN}"]:
        raise NotSigned(f"mailroute dkim show printed no record for our key:\n{output}")
    return records


def dnsfunc(port: int) -> DnsFunc:
    """dkimpy's key look-up, asking the bench's dnsmasq only."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [HOST]
    resolver.port = port

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(b"".join(record.strings) for record in answer)

    return get_txt


class Capture:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(bytes(content))
        return "250 OK"


@contextmanager
def running_capture() -> Iterator[tuple[Capture, str]]:
    capture = Capture()
    port = free_port()
    # aiosmtpd logs every command at INFO: the bench's -v is about rounds, not these.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(capture, hostname=HOST, port=port)
    controller.start()
    try:
        yield capture, f"{HOST}:{port}"
    finally:
        controller.stop()


def confirm_signed(pair: turns.Pair, get_txt: DnsFunc) -> dict[str, Any]:
    """One message through each server, restarted to relay to a capture: the "on" copy
    must verify (DKIM and ARC), the "off" copy carry neither; raises NotSigned."""
    copies = {mode: forwarded_copy(pair.prepared[mode]) for mode in MODES}
    off = copies["off"]
    if b"\nDKIM-Signature:" in b"\n" + off or b"\nARC-Seal:" in b"\n" + off:
        raise NotSigned("the server with signing off signed or sealed its copy")
    on = copies["on"]
    signature = dkim.DKIM(on)
    if not signature.verify(dnsfunc=get_txt) or signature.domain != SIGNING_DOMAIN.encode():
        raise NotSigned(f"no DKIM signature of {SIGNING_DOMAIN} verifies on the copy:\n{head(on)}")
    cv, results, comment = dkim.arc_verify(on, dnsfunc=get_txt)
    seal = re.search(rb"^ARC-Seal:[^\n]*\n(?:[ \t][^\n]*\n)*", on, re.M)
    if cv != dkim.CV_Pass or seal is None or b"d=" + SIGNING_DOMAIN.encode() not in seal[0]:
        raise NotSigned(f"our ARC set does not verify ({cv!r}, {comment}):\n{head(on)}")
    return {
        "dkim": "pass",
        "dkim_domain": SIGNING_DOMAIN,
        "selector": signature.selector.decode(),
        "arc": cv.decode(),
        "arc_instances": len(results),
        "off_signed": False,
    }


def forwarded_copy(ready: turns.Prepared) -> bytes:
    """The copy a server forwards of one message from the bench's sender."""
    content = verdicts.message(SENDER, load.RECIPIENT)
    with (
        running_capture() as (capture, address),
        service.running(ready.url, ready.workdir, smarthost=address, extra_env=ready.env) as server,
    ):
        with smtplib.SMTP(HOST, server.smtp_port, local_hostname=load.HELO_NAME) as client:
            client.sendmail(SENDER, [load.RECIPIENT], content)
        deadline = time.monotonic() + CAPTURE_TIMEOUT
        while not capture.messages:
            if time.monotonic() > deadline:
                raise NotSigned(f"no copy from {ready.mode} in {CAPTURE_TIMEOUT} s")
            time.sleep(0.1)
    return capture.messages[0]


def head(message: bytes) -> str:
    return message.split(b"\r\n\r\n", 1)[0].decode(errors="replace")


def stored(content: bytes) -> bytes:
    """``content`` as the queue keeps it: our Received, our Authentication-Results."""
    received = received_header(
        helo=load.HELO_NAME,
        client_ip=HOST,
        hostname=HOSTNAME,
        protocol="ESMTP",
        queue_id="bench-1",
        recipient=load.RECIPIENT,
        now=datetime.now(UTC),
    )
    checked = Verdicts(
        spf=Spf("pass", SENDER_DOMAIN),
        dmarc=Dmarc("pass", SENDER_DOMAIN, "reject"),
    )
    return received + authentication_results(HOSTNAME, checked, mail_from=SENDER) + content


def signer_cost(key_file: Path) -> dict[str, Any]:
    """``Signer.fields`` in process: a 4 KB and a 25 MiB message, DKIM and ARC."""
    key = load_pem(key_file, SELECTOR, datetime.now(UTC))
    signer = Signer(SIGNING_DOMAIN, HOSTNAME, [key])
    record = key.record().encode()

    def sign_and_check(message: bytes, samples: int) -> list[float]:
        seconds = []
        for _ in range(samples):
            started = time.perf_counter()
            fields = signer.fields(message)
            seconds.append(time.perf_counter() - started)
        if b"ARC-Seal:" not in fields or not dkim.verify(
            fields + message, dnsfunc=lambda name, timeout=5: record
        ):
            raise NotSigned("Signer.fields made no ARC set or no verifying DKIM signature")
        return seconds

    small = stored(verdicts.message(SENDER, load.RECIPIENT))
    sign_and_check(small, 5)  # warm up: imports, the key parsed
    large = stored(b"".join(bigmail.message_lines(LARGE_BYTES, SENDER, load.RECIPIENT, 1)))
    result: dict[str, Any] = {
        "small": {"bytes": len(small)} | summarize(sign_and_check(small, SMALL_SAMPLES)),
        "large": {"bytes": len(large)} | summarize(sign_and_check(large, LARGE_SAMPLES)),
    }
    tracemalloc.start()
    try:
        signer.fields(large)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The message itself was made before tracemalloc started: not counted.
    result["large"]["peak_mib"] = round(peak / bigmail.MIB, 1)
    result["large"]["peak_per_message"] = round(peak / len(large), 2)
    log.info("Signer.fields: %s", result)
    return result


def markdown(document: dict[str, Any]) -> str:
    """Forwarded/s with signing off and on, and Signer.fields in process."""
    lines = [
        "| database | sessions | off forwarded/s | on forwarded/s | on/off |",
        "| --- | --- | --- | --- | --- |",
    ]
    cost = [
        "| database | message | samples | p50 ms | p99 ms | peak memory |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for database, results in document["databases"].items():
        if "error" in results:
            lines.append(f"| {database} | {results['error']} | | | |")
        for count in document["options"]["sessions"]:
            cell = results.get(f"sessions_{count}")
            if cell is not None:
                lines.append(
                    f"| {database} | {count} | {cell['off']['forwarded_per_s']} | "
                    f"{cell['on']['forwarded_per_s']} | {cell['ratio_on_off']} |"
                )
        for name, measured in results.get("signer", {}).items():
            peak = f"{measured['peak_mib']} MiB" if "peak_mib" in measured else ""
            cost.append(
                f"| {database} | {name} ({measured['bytes']} B) | {measured['count']} | "
                f"{measured['p50_ms']} | {measured['p99_ms']} | {peak} |"
            )
    return "\n".join(lines) + "\n\n`Signer.fields`, in process:\n\n" + "\n".join(cost)
