"""Forwarding throughput, side by side: mailroute and Postfix under the same load.

Per database, one smtp-sink, one mailroute and one Postfix (an alias forwarder to the
same sink) run for the whole part. For each session count the two take turns, mailroute
first, each round sending ``messages / rounds`` messages and ending when the sink holds
all of them, so each round starts idle. A cell reports the median accepted/s and
forwarded/s of each server and the ratio mailroute/Postfix of those medians; the rounds
keep every value and the CPU time each process spent, the idle one's included.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from bench import load, processes, service
from bench.context import Context
from bench.postfix import running_postfix
from bench.sink import Sink, running_sink

log = logging.getLogger(__name__)

SERVERS = ("mailroute", "postfix")
WARM_UP_MESSAGES = 50
# Above this share of a round's wall time on the CPU the sink may be what limits a round.
SINK_BUSY = 0.8


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    cpu_seconds: Callable[[], float]
    pss_kib: Callable[[], int]


def run(ctx: Context) -> dict[str, Any]:
    """Start the sink and both servers on ``ctx``'s database, then measure every cell."""
    with ExitStack() as stack:
        sink = stack.enter_context(running_sink())
        workdir = ctx.workdir / "mailroute"
        workdir.mkdir(parents=True, exist_ok=True)
        database_url = ctx.fresh_database(workdir)
        service.provision(database_url, workdir)
        mailroute = stack.enter_context(
            service.running(database_url, workdir, smarthost=sink.address)
        )
        postfix = stack.enter_context(running_postfix(ctx.workdir / "postfix", sink_port=sink.port))
        servers = [
            Server(
                "mailroute",
                mailroute.smtp_port,
                lambda: processes.cpu_seconds(mailroute.pids()),
                lambda: processes.pss_kib(*mailroute.pids()),
            ),
            Server(
                "postfix",
                postfix.port,
                postfix.cpu_seconds,
                lambda: processes.pss_kib(*postfix.pids()),
            ),
        ]
        for server in servers:
            # First messages pay for imports, caches and connection pools: not measured.
            load.send(server.port, sink, messages=WARM_UP_MESSAGES, sessions=1)
        for sessions in ctx.options.sessions:
            ctx.emit(f"sessions_{sessions}", measure_cell(ctx, sink, servers, sessions))
        return {"messages_per_cell": ctx.options.messages, "rounds": ctx.options.rounds}


def measure_cell(ctx: Context, sink: Sink, servers: list[Server], sessions: int) -> dict[str, Any]:
    per_round = max(1, ctx.options.messages // ctx.options.rounds)
    rounds: list[dict[str, Any]] = []
    for number in range(1, ctx.options.rounds + 1):
        for server in servers:
            record = measure_round(ctx, sink, servers, server, sessions, per_round)
            rounds.append({"round": number} | record)
            log.info(
                "%s %s sessions=%d round %d: accepted %.1f/s forwarded %.1f/s",
                ctx.database,
                server.name,
                sessions,
                number,
                record["accepted_per_s"],
                record["forwarded_per_s"],
            )
    return summarize(sessions, per_round, rounds)


def measure_round(
    ctx: Context,
    sink: Sink,
    servers: list[Server],
    server: Server,
    sessions: int,
    messages: int,
) -> dict[str, Any]:
    before = cpu_sample(ctx, sink, servers)
    result = load.send(
        server.port,
        sink,
        messages=messages,
        sessions=sessions,
        reuse_sessions=ctx.options.reuse_sessions,
    )
    cpu = cpu_spent(before, cpu_sample(ctx, sink, servers))
    sink_share = cpu["sink"] / result.forwarded_seconds
    if sink_share > SINK_BUSY:
        log.warning("the sink was on the CPU %.0f%% of a %s round", 100 * sink_share, server.name)
    return (
        {"server": server.name}
        | result.as_dict()
        | {
            "cpu_seconds": cpu,
            "pss_kib": server.pss_kib(),
        }
    )


@dataclass(frozen=True)
class CpuSample:
    processes: dict[str, float]
    # On PostgreSQL, per server process serving mailroute's connections.
    backends: dict[int, float]


def cpu_sample(ctx: Context, sink: Sink, servers: list[Server]) -> CpuSample:
    spent = {s.name: s.cpu_seconds() for s in servers} | {"sink": sink.cpu_seconds()}
    backends = {}
    if ctx.database == "postgresql":
        backends = processes.cpu_seconds_each(service.backend_pids(ctx.pg_url))
    return CpuSample(spent, backends)


def cpu_spent(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds between two samples per process (tree). A PostgreSQL backend that came
    during the round counts from zero; one that went is lost (its time is not kept
    anywhere we can read), so that figure is a lower bound."""
    spent = {name: after.processes[name] - before.processes[name] for name in after.processes}
    if after.backends or before.backends:
        spent["postgresql"] = sum(
            cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items()
        )
    return {name: round(value, 2) for name, value in spent.items()}


def summarize(sessions: int, per_round: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    medians: dict[str, dict[str, float]] = {}
    for name in SERVERS:
        mine = [r for r in rounds if r["server"] == name]
        medians[name] = {
            key: round(statistics.median(r[key] for r in mine), 1)
            for key in ("accepted_per_s", "forwarded_per_s")
        }
        medians[name]["cpu_ms_per_message"] = round(
            statistics.median(cpu_per_message(r) for r in mine), 2
        )
    ratio = {
        key: round(medians["mailroute"][key] / medians["postfix"][key], 3)
        for key in ("accepted_per_s", "forwarded_per_s")
    }
    return {
        "sessions": sessions,
        "messages_per_round": per_round,
        **medians,
        "ratio_mailroute_postfix": ratio,
        "rounds": rounds,
    }


def cpu_per_message(round_: dict[str, Any]) -> float:
    """Milliseconds of CPU the round's server spent per message; mailroute's includes the
    PostgreSQL backends serving it."""
    cpu = round_["cpu_seconds"]
    spent = cpu[round_["server"]]
    if round_["server"] == "mailroute":
        spent += cpu.get("postgresql", 0.0)
    return 1000 * float(spent) / int(round_["messages"])
