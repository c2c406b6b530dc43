"""What the inbound checks cost: forwarding throughput with ``MAILROUTE_INBOUND_AUTH=off``
and ``=enforce`` side by side, and the latency of a verdict.

Per database, one dnsmasq publishes SPF (``ip4:127.0.0.0/8 -all``, the load comes from
127.0.0.1), DMARC (``p=reject``) and a DKIM key for the sender's domain; one smtp-sink
receives everything; two ``mailroute serve`` (one with the checks off, one enforcing them,
each with a database of its own) relay to it. For each session count the two take turns,
off first, like the forwarding part's servers. A cell reports the median forwarded/s of
each and the ratio enforce/off. Then every forwarded message of the enforcing server must
be on record with SPF and DMARC ``pass`` (through ``GET /v1/activity``), or the part fails:
a figure for checks that did not run is worthless.

The verdict latency is measured in process (``verdicts.py``) against the same dnsmasq.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import ExitStack
from typing import Any

from bench import load, turns, verdicts
from bench.context import Context
from bench.dns import running_dns
from bench.sink import running_sink

log = logging.getLogger(__name__)

MODES = ("off", "enforce")
SENDER_DOMAIN = "sender.bench.example"
SENDER = f"bench@{SENDER_DOMAIN}"
LATENCY_SAMPLES = 500
LATENCY_CONCURRENCY = (1, 10)
# The bound: the checks cost no more than 25% of throughput at 10 sessions.
TARGET_RATIO = 0.75


def run(ctx: Context) -> dict[str, Any]:
    key = verdicts.dkim_key(ctx.workdir)
    records = [
        (SENDER_DOMAIN, "v=spf1 ip4:127.0.0.0/8 -all"),
        (f"_dmarc.{SENDER_DOMAIN}", "v=DMARC1; p=reject"),
        (f"{verdicts.DKIM_SELECTOR}._domainkey.{SENDER_DOMAIN}", key.record),
    ]
    with running_dns(records, local_domains=[SENDER_DOMAIN]) as dns:
        throughput(ctx, dns.nameserver)
        # The servers are gone: the checks in this process have the machine to themselves.
        latency = asyncio.run(verdict_latency(dns.port, key))
    return {"messages_per_cell": ctx.options.messages, "verdict_latency": latency}


def throughput(ctx: Context, nameserver: str) -> None:
    """Every cell with the checks off and enforced, then the proof that they ran."""
    envs = {
        mode: {"MAILROUTE_INBOUND_AUTH": mode, "MAILROUTE_DNS_NAMESERVERS": nameserver}
        for mode in MODES
    }
    pair = turns.Pair(turns.prepare(ctx, envs))
    with ExitStack() as stack:
        sink = stack.enter_context(running_sink())
        turns.start(stack, pair, sink, SENDER)
        turns.measure_cells(ctx, sink, pair, SENDER)
        ctx.emit("checked", turns.confirm_checked(pair, checking=["enforce"]))


async def verdict_latency(dns_port: int, key: verdicts.DkimKey) -> dict[str, Any]:
    recipient = load.RECIPIENT
    contents = {
        "plain": verdicts.message(SENDER, recipient),
        "dkim_signed": verdicts.message(SENDER, recipient, key),
    }
    expected = {
        "plain": "spf=pass dkim=none dmarc=pass accepted",
        "dkim_signed": "spf=pass dkim=pass dmarc=pass accepted",
    }
    results: dict[str, Any] = {}
    for cached in (True, False):
        for name, content in contents.items():
            for concurrency in LATENCY_CONCURRENCY:
                measured = await verdicts.measure(
                    dns_port,
                    content,
                    expected=expected[name],
                    sender=SENDER,
                    recipient=recipient,
                    samples=LATENCY_SAMPLES,
                    concurrency=concurrency,
                    cached=cached,
                )
                label = f"{name}_{'cached' if cached else 'uncached'}_{concurrency}"
                results[label] = measured
                log.info("verdict latency %s: %s", label, measured)
    return results


def markdown(document: dict[str, Any]) -> str:
    """Forwarded/s with the checks off and enforced, and the verdict latency."""
    sessions = document["options"]["sessions"]
    lines = [
        "| database | sessions | off forwarded/s | enforce forwarded/s | enforce/off |",
        "| --- | --- | --- | --- | --- |",
    ]
    latency = [
        "| database | message | concurrency | p50 ms | p99 ms | checks/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for database, results in document["databases"].items():
        if "error" in results:
            lines.append(f"| {database} | {results['error']} | | | |")
        for count in sessions:
            cell = results.get(f"sessions_{count}")
            if cell is None:
                continue
            ratio = cell["ratio_enforce_off"]
            mark = "" if count != 10 else (" (met)" if ratio >= TARGET_RATIO else " (missed)")
            lines.append(
                f"| {database} | {count} | {cell['off']['forwarded_per_s']} | "
                f"{cell['enforce']['forwarded_per_s']} | {ratio}{mark} |"
            )
        for name, measured in results.get("verdict_latency", {}).items():
            kind, _, concurrency = name.rpartition("_")
            latency.append(
                f"| {database} | {kind.replace('_', ' ')} | {concurrency} | "
                f"{measured['p50_ms']} | {measured['p99_ms']} | {measured['checks_per_s']} |"
            )
    return "\n".join(lines) + "\n\nVerdict latency, in process:\n\n" + "\n".join(latency)
