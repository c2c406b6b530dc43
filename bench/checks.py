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
import json
import logging
import statistics
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from bench import load, service, verdicts
from bench.context import Context
from bench.dns import running_dns
from bench.ports import HOST
from bench.service import Mailroute
from bench.sink import Sink, running_sink

log = logging.getLogger(__name__)

MODES = ("off", "enforce")
SENDER_DOMAIN = "sender.bench.example"
SENDER = f"bench@{SENDER_DOMAIN}"
WARM_UP_MESSAGES = 50
LATENCY_SAMPLES = 500
LATENCY_CONCURRENCY = (1, 10)
# The bound: the checks cost no more than 25% of throughput at 10 sessions.
TARGET_RATIO = 0.75


class ChecksDidNotRun(RuntimeError):
    """The enforcing server forwarded messages without SPF and DMARC verdicts of pass."""


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
    with ExitStack() as stack:
        sink = stack.enter_context(running_sink())
        servers: dict[str, Mailroute] = {}
        tokens: dict[str, str] = {}
        for mode in MODES:
            workdir = ctx.workdir / mode
            workdir.mkdir(parents=True, exist_ok=True)
            url = service.reset_database(ctx.database, database_url(ctx.pg_url, mode), workdir)
            service.provision(url, workdir)
            tokens[mode] = api_token(url, workdir)
            env = {"MAILROUTE_INBOUND_AUTH": mode, "MAILROUTE_DNS_NAMESERVERS": nameserver}
            servers[mode] = stack.enter_context(
                service.running(url, workdir, smarthost=sink.address, extra_env=env)
            )
        sent = dict.fromkeys(MODES, 0)
        for mode in MODES:
            # First messages pay for imports, caches and connection pools: not measured.
            port = servers[mode].smtp_port
            load.send(port, sink, messages=WARM_UP_MESSAGES, sessions=1, sender=SENDER)
            sent[mode] += WARM_UP_MESSAGES
        for sessions in ctx.options.sessions:
            cell = measure_cell(ctx, sink, servers, sessions)
            for mode in MODES:
                sent[mode] += sum(r["messages"] for r in cell["rounds"] if r["mode"] == mode)
            ctx.emit(f"sessions_{sessions}", cell)
        ctx.emit("checked", confirm_checked(servers, tokens, sent))


def database_url(pg_url: str, mode: str) -> str:
    """PostgreSQL: ``--pg-url``'s database for "off", one named after it for "enforce"
    (the two servers must not share a queue). SQLite: each server's work directory."""
    if mode == "off":
        return pg_url
    parts = urlsplit(pg_url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}_{mode}"))


def api_token(url: str, workdir: Path) -> str:
    env = service.settings_env(url)
    output = service.mailroute_command(["token", "create", "--name", "bench"], env, workdir)
    return output.strip().splitlines()[-1]


def measure_cell(
    ctx: Context, sink: Sink, servers: dict[str, Mailroute], sessions: int
) -> dict[str, Any]:
    per_round = max(1, ctx.options.messages // ctx.options.rounds)
    rounds: list[dict[str, Any]] = []
    for number in range(1, ctx.options.rounds + 1):
        for mode in MODES:
            result = load.send(
                servers[mode].smtp_port,
                sink,
                messages=per_round,
                sessions=sessions,
                reuse_sessions=ctx.options.reuse_sessions,
                sender=SENDER,
            )
            rounds.append({"round": number, "mode": mode} | result.as_dict())
            log.info(
                "%s %s sessions=%d round %d: accepted %.1f/s forwarded %.1f/s",
                ctx.database,
                mode,
                sessions,
                number,
                result.accepted_per_s,
                result.forwarded_per_s,
            )
    medians = {
        mode: {
            key: round(statistics.median(r[key] for r in rounds if r["mode"] == mode), 1)
            for key in ("accepted_per_s", "forwarded_per_s")
        }
        for mode in MODES
    }
    ratio = round(medians["enforce"]["forwarded_per_s"] / medians["off"]["forwarded_per_s"], 3)
    return {
        "sessions": sessions,
        "messages_per_round": per_round,
        **medians,
        "ratio_enforce_off": ratio,
        "rounds": rounds,
    }


def confirm_checked(
    servers: dict[str, Mailroute], tokens: dict[str, str], sent: dict[str, int]
) -> dict[str, int]:
    """How many forwarded messages each server has on record with SPF and DMARC pass;
    raises ChecksDidNotRun unless that is all the enforcing server's and none of the
    other's."""
    passed = {
        mode: count_activity(
            servers[mode], tokens[mode], {"status": "forwarded", "spf": "pass", "dmarc": "pass"}
        )
        for mode in MODES
    }
    if passed["enforce"] != sent["enforce"] or passed["off"] != 0:
        raise ChecksDidNotRun(
            f"forwarded with spf=pass dmarc=pass: {passed} of {sent} sent; the enforcing "
            f"server's log: {servers['enforce'].log_file}"
        )
    return {f"{mode}_passed": passed[mode] for mode in MODES} | {
        f"{mode}_sent": sent[mode] for mode in MODES
    }


def count_activity(server: Mailroute, token: str, where: dict[str, str]) -> int:
    """The activity rows matching ``where``, page by page through the API."""
    count, before = 0, None
    while True:
        query = where | {"limit": "500"} | ({"before": str(before)} if before else {})
        request = urllib.request.Request(
            f"http://{HOST}:{server.api_port}/v1/activity?{urlencode(query)}",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.load(response)
        count += len(page["items"])
        before = page["next_before"]
        if before is None:
            return count


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
