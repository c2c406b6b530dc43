"""Two ``mailroute serve`` that differ in a few settings, taking turns under the same load:
the machinery the checks and signing parts share.

Each server has a database of its own (the two must not share a queue): on PostgreSQL
``--pg-url``'s for the first mode and one named after it with ``_<mode>`` for the others;
on SQLite one in the server's work directory. Both relay to one smtp-sink. For each
session count the servers take turns, first mode first, like the forwarding part's
servers; a cell reports the median accepted/s and forwarded/s of each and the ratio of
the second's forwarded/s to the first's.
"""

from __future__ import annotations

import json
import logging
import statistics
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from bench import load, service
from bench.context import Context
from bench.ports import HOST
from bench.service import Mailroute
from bench.sink import Sink

log = logging.getLogger(__name__)

WARM_UP_MESSAGES = 50


class ChecksDidNotRun(RuntimeError):
    """A server that enforces the checks forwarded messages without SPF and DMARC verdicts
    of pass, or one that does not has verdicts on record."""


@dataclass
class Prepared:
    """A server's database, provisioned, and what it will run with."""

    mode: str
    url: str
    workdir: Path
    env: dict[str, str]
    token: str


@dataclass
class Pair:
    """The running servers by mode (in turn order) and the messages each was sent."""

    prepared: dict[str, Prepared]
    servers: dict[str, Mailroute] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)

    @property
    def modes(self) -> list[str]:
        return list(self.prepared)


def prepare(ctx: Context, envs: dict[str, dict[str, str]]) -> dict[str, Prepared]:
    """A fresh, provisioned database and an API token for each mode; ``envs``: each mode's
    settings, in turn order."""
    first = next(iter(envs))
    prepared = {}
    for mode, env in envs.items():
        workdir = ctx.workdir / mode
        workdir.mkdir(parents=True, exist_ok=True)
        url = service.reset_database(ctx.database, database_url(ctx.pg_url, mode, first), workdir)
        service.provision(url, workdir, extra_env=env)
        prepared[mode] = Prepared(mode, url, workdir, env, api_token(url, workdir))
    return prepared


def start(stack: ExitStack, pair: Pair, sink: Sink, sender: str) -> None:
    """Start every server of ``pair`` relaying to ``sink`` (stopped when ``stack``
    closes), then warm each up: the first messages pay for imports, caches and connection
    pools and are not measured."""
    for mode, ready in pair.prepared.items():
        pair.servers[mode] = stack.enter_context(
            service.running(ready.url, ready.workdir, smarthost=sink.address, extra_env=ready.env)
        )
    for mode, server in pair.servers.items():
        load.send(server.smtp_port, sink, messages=WARM_UP_MESSAGES, sessions=1, sender=sender)
        pair.sent[mode] = pair.sent.get(mode, 0) + WARM_UP_MESSAGES


def database_url(pg_url: str, mode: str, first: str) -> str:
    """PostgreSQL: ``--pg-url``'s database for the ``first`` mode, one named after it
    for any other. SQLite: each server's work directory (``pg_url`` unused)."""
    if mode == first:
        return pg_url
    parts = urlsplit(pg_url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}_{mode}"))


def api_token(url: str, workdir: Path) -> str:
    env = service.settings_env(url)
    output = service.mailroute_command(["token", "create", "--name", "bench"], env, workdir)
    return output.strip().splitlines()[-1]


def measure_cells(ctx: Context, sink: Sink, pair: Pair, sender: str) -> None:
    """Every session count of ``--sessions``, each emitted as ``sessions_<n>``."""
    for sessions in ctx.options.sessions:
        cell = measure_cell(ctx, sink, pair, sessions, sender)
        for mode in pair.modes:
            pair.sent[mode] += sum(r["messages"] for r in cell["rounds"] if r["mode"] == mode)
        ctx.emit(f"sessions_{sessions}", cell)


def measure_cell(
    ctx: Context, sink: Sink, pair: Pair, sessions: int, sender: str
) -> dict[str, Any]:
    per_round = max(1, ctx.options.messages // ctx.options.rounds)
    rounds: list[dict[str, Any]] = []
    for number in range(1, ctx.options.rounds + 1):
        for mode, server in pair.servers.items():
            result = load.send(
                server.smtp_port,
                sink,
                messages=per_round,
                sessions=sessions,
                reuse_sessions=ctx.options.reuse_sessions,
                sender=sender,
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
        for mode in pair.modes
    }
    base, other = pair.modes[0], pair.modes[-1]
    ratio = round(medians[other]["forwarded_per_s"] / medians[base]["forwarded_per_s"], 3)
    return {
        "sessions": sessions,
        "messages_per_round": per_round,
        **medians,
        f"ratio_{other}_{base}": ratio,
        "rounds": rounds,
    }


def confirm_checked(pair: Pair, checking: Sequence[str]) -> dict[str, int]:
    """How many forwarded messages each server has on record with SPF and DMARC pass;
    raises ChecksDidNotRun unless that is every message of the ``checking`` modes' servers
    and none of the others'."""
    passed = {
        mode: count_activity(
            pair.servers[mode],
            pair.prepared[mode].token,
            {"status": "forwarded", "spf": "pass", "dmarc": "pass"},
        )
        for mode in pair.modes
    }
    expected = {mode: pair.sent[mode] if mode in checking else 0 for mode in pair.modes}
    if passed != expected:
        logs = ", ".join(str(pair.servers[mode].log_file) for mode in checking)
        raise ChecksDidNotRun(
            f"forwarded with spf=pass dmarc=pass: {passed}, expected {expected} (sent "
            f"{pair.sent}); the checking servers' logs: {logs}"
        )
    return {f"{mode}_passed": passed[mode] for mode in pair.modes} | {
        f"{mode}_sent": pair.sent[mode] for mode in pair.modes
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
