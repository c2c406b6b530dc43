"""Large messages: 25 MiB messages through ``mailroute serve`` to Postfix's smtp-sink;
MB/s accepted and end to end, and the server's peak memory per message size.

Target (the issue): peak server memory under 3x the message size, i.e. the message is
streamed to storage rather than copied around in memory. The peak is VmHWM, reset before
each round (proc(5), /proc/PID/clear_refs "5"), minus the resident size just before it,
summed over serve's processes (SMTP, worker) even though their peaks come at different
times. With several messages at once the server holds each of them: the target is judged
per message in flight. The server signs and seals what it forwards, as it does by default.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import service
from bench.bigmail import MIB, message_lines
from bench.context import Context
from bench.knobs import env_int
from bench.sink import Sink, running_sink
from bench.smtpclient import SmtpClient

HOST = "127.0.0.1"
SENDER = "sender@sender.example.com"
RECIPIENT = f"user@{service.DOMAIN}"
# Seconds the sink's count may stand still before the round is declared stuck.
STALL_SECONDS = 120.0
TARGET_RATIO = 3.0


@dataclass(frozen=True, slots=True)
class LargeOptions:
    size: int = 25 * MIB
    sequential: int = 3
    concurrent: int = 2


DEFAULTS = LargeOptions()


def measure(kind: str, pg_url: str, workdir: Path, options: LargeOptions) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=True)
    url = service.reset_database(kind, pg_url, workdir)
    service.provision(url, workdir)
    messages = [
        message_lines(options.size, SENDER, RECIPIENT, n)
        for n in range(max(options.sequential, options.concurrent))
    ]
    size = sum(map(len, messages[0]))
    extra = {
        # Room for our Received: line on top of the client's bytes.
        "MAILROUTE_MAX_MESSAGE_SIZE": str(options.size + 4 * MIB),
        # Signed and sealed, as by default: the worker hashes the body it sends.
        "MAILROUTE_DKIM_SIGN": "true",
        "MAILROUTE_ARC_SEAL": "true",
    }
    with (
        running_sink() as sink,
        service.running(url, workdir, smarthost=sink.address, extra_env=extra) as server,
    ):
        # A small message first, so that lazy imports and pools count in the baseline.
        _round(server, sink, [message_lines(64 * 1024, SENDER, RECIPIENT, 999)], 1, 64 * 1024)
        warm_rss = service.rss_kib(*server.pids())
        rounds: dict[str, dict[str, Any]] = {}
        plan = [
            ("one_at_a_time", messages[: options.sequential], 1),
            (f"{options.concurrent}_at_once", messages[: options.concurrent], options.concurrent),
        ]
        for name, batch_messages, concurrency in plan:
            rounds[name] = _round(server, sink, batch_messages, concurrency, size)
    return {
        "database": kind,
        "options": asdict(options),
        "message_bytes": size,
        "server_rss_after_warm_up_kib": warm_rss,
        "rounds": rounds,
        "target_ratio": TARGET_RATIO,
        "target_met": all(
            r["peak_over_baseline_per_message_in_flight"] < TARGET_RATIO for r in rounds.values()
        ),
    }


def _round(
    server: service.Mailroute,
    sink: Sink,
    messages: list[list[bytes]],
    concurrency: int,
    size: int,
) -> dict[str, Any]:
    """Send ``messages``, ``concurrency`` at a time, then wait until the sink has them."""
    pids = server.pids()
    baseline = service.rss_kib(*pids)
    before = {pid: service.rss_kib(pid) for pid in pids}
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    target = sink.received() + len(messages)
    start = time.monotonic()
    accept = asyncio.run(_send_all(server.smtp_port, messages, concurrency))
    accepted_wall = time.monotonic() - start
    end_to_end = sink.wait_for(target, stall=STALL_SECONDS) - start
    peak = service.peak_rss_kib(*pids)
    # serve is several processes (SMTP, the delivery worker): each one's own growth too,
    # as the sum of their peaks adds maxima reached at different moments.
    growth = {pid: service.peak_rss_kib(pid) - rss for pid, rss in before.items()}
    total = size * len(messages)
    return {
        "messages": len(messages),
        "concurrency": concurrency,
        "accept_seconds": [round(s, 3) for s in accept],
        "accepted_mb_per_s": round(total / 1e6 / accepted_wall, 2),
        "end_to_end_seconds": round(end_to_end, 3),
        "end_to_end_mb_per_s": round(total / 1e6 / end_to_end, 2),
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak,
        "rss_after_kib": service.rss_kib(*pids),
        "peak_over_baseline_per_message_size": round((peak - baseline) * 1024 / size, 2),
        "largest_process_growth_per_message_size": round(max(growth.values()) * 1024 / size, 2),
        # Which process grew by how much (serve, its worker, its SMTP children).
        "growth_per_message_size_by_process": {
            _role(pid): round(kib * 1024 / size, 2) for pid, kib in sorted(growth.items())
        },
        # With several at once, the fair share: what each message in flight cost.
        "peak_over_baseline_per_message_in_flight": round(
            (peak - baseline) * 1024 / size / concurrency, 2
        ),
    }


def _by_role(growth: dict[str, float]) -> str:
    """ "smtp 1.2, worker 1.1": the pids left out, as they change from run to run."""
    return ", ".join(f"{name.split()[0]} {ratio}" for name, ratio in growth.items())


def _role(pid: int) -> str:
    """``serve``, ``worker`` or ``smtp`` and the pid, from the process's command line."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    role = next((w.decode() for w in words if w in (b"serve", b"worker", b"smtp")), "?")
    return f"{role} {pid}"


async def _send_all(port: int, messages: list[list[bytes]], concurrency: int) -> list[float]:
    """Each message's accept time (MAIL FROM to the 250 after DATA), ``concurrency`` at once."""
    accept: list[float] = []
    for first in range(0, len(messages), concurrency):
        batch = messages[first : first + concurrency]
        accept += await asyncio.gather(*(_send(port, lines) for lines in batch))
    return accept


async def _send(port: int, lines: list[bytes]) -> float:
    client = await SmtpClient.connect(HOST, port)
    try:
        start = time.perf_counter()
        await client.expect(await client.command(f"MAIL FROM:<{SENDER}>"), 250)
        await client.expect(await client.command(f"RCPT TO:<{RECIPIENT}>"), 250)
        await client.expect(await client.send_data(lines), 250)
        return time.perf_counter() - start
    finally:
        await client.close()


def run(ctx: Context) -> dict[str, object]:
    options = LargeOptions(
        size=env_int("BENCH_LARGE_MIB", DEFAULTS.size // MIB) * MIB,
        sequential=env_int("BENCH_LARGE_MESSAGES", DEFAULTS.sequential),
    )
    return measure(ctx.database, ctx.pg_url, ctx.workdir, options)


def markdown(document: dict[str, Any]) -> str:
    """One row per database and round: MB/s accepted and delivered, peak memory."""
    lines = [
        "| database | round | MB/s accepted | MB/s end to end | RSS before | peak "
        "| (peak - before) / size, all processes "
        f"| the same per message in flight (target < {TARGET_RATIO:g}) "
        "| growth / size by process |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for database, result in document["databases"].items():
        if "error" in result:
            lines.append(f"| {database} | {result['error']} | | | | | | | |")
            continue
        size_mib = result["message_bytes"] / MIB
        for name, r in result["rounds"].items():
            lines.append(
                f"| {database} | {r['messages']} x {size_mib:.0f} MiB, {name} "
                f"| {r['accepted_mb_per_s']} | {r['end_to_end_mb_per_s']} "
                f"| {r['baseline_rss_kib'] / 1024:.0f} MiB | {r['peak_rss_kib'] / 1024:.0f} MiB "
                f"| {r['peak_over_baseline_per_message_size']} "
                f"| {r['peak_over_baseline_per_message_in_flight']} "
                f"| {_by_role(r.get('growth_per_message_size_by_process', {}))} |"
            )
    return "\n".join(lines)
