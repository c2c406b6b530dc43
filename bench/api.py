"""The management API under load: alias creation (POST) and route explanations
(``GET /v1/route``), requests per second and latency at 1 and 16 concurrent clients.

The client is httpx, in this process, on the same two shared cores as the server: the
CPU each side used is reported, so a client-bound figure shows itself as one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import processes, service
from bench.context import Context
from bench.knobs import env_float
from bench.latency import summarize

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ApiOptions:
    concurrency: tuple[int, ...] = (1, 16)
    seconds: float = 8.0


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    url: str
    expect: int
    json: dict[str, object] | None = None
    params: dict[str, str] | None = None


class Unexpected(RuntimeError):
    """The API answered something else than the 2xx the bench asked for."""


def measure(kind: str, pg_url: str, workdir: Path, options: ApiOptions) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=True)
    url = service.reset_database(kind, pg_url, workdir)
    service.provision(url, workdir)
    env = service.settings_env(url)
    output = service.mailroute_command(["token", "create", "--name", "bench"], env, workdir)
    token = output.strip().splitlines()[-1]
    extra = {"MAILROUTE_API_RATE_LIMIT": "0"}
    # No mail is sent: the smarthost is a port nobody listens on.
    smarthost = f"{HOST}:{service.free_port()}"
    result: dict[str, object] = {"database": kind, "options": asdict(options)}
    with service.running(url, workdir, smarthost=smarthost, extra_env=extra) as server:
        base = f"http://{HOST}:{server.api_port}/v1"
        created: list[str] = []
        for clients in options.concurrency:
            result[f"create_alias_{clients}"] = _round(
                server, token, _creations(base, clients, created), clients, options.seconds
            )
        for clients in options.concurrency:
            result[f"get_route_{clients}"] = _round(
                server, token, _lookups(base, created), clients, options.seconds
            )
        result["aliases_created"] = len(created)
        result["server_rss_kib"] = service.rss_kib(*server.pids())
    return result


def _creations(base: str, clients: int, created: list[str]) -> Callable[[], Call]:
    """Each call a new alias; ``created`` collects their addresses for the lookups."""
    numbers = itertools.count(len(created))

    def next_call() -> Call:
        local = f"api{next(numbers)}-c{clients}"
        created.append(f"{local}@{service.DOMAIN}")
        body: dict[str, object] = {"local_part": local, "destinations": [service.DESTINATION]}
        return Call("POST", f"{base}/domains/{service.DOMAIN}/aliases", 201, json=body)

    return next_call


def _lookups(base: str, created: list[str]) -> Callable[[], Call]:
    """Existing aliases, with an unknown address and a tagged one now and then."""
    addresses = itertools.cycle(_lookup_mix(created))

    def next_call() -> Call:
        return Call("GET", f"{base}/route", 200, params={"address": next(addresses)})

    return next_call


def _lookup_mix(created: list[str]) -> Iterator[str]:
    for number, address in enumerate(created or [f"user@{service.DOMAIN}"]):
        yield address
        if number % 10 == 0:
            yield f"nobody{number}@{service.DOMAIN}"
            yield address.replace("@", "+tag@")


def _round(
    server: service.Mailroute,
    token: str,
    next_call: Callable[[], Call],
    clients: int,
    seconds: float,
) -> dict[str, object]:
    """``clients`` keep-alive clients, each one request at a time, for ``seconds``."""
    server_cpu = processes.cpu_seconds(server.pids())
    own_cpu = _own_cpu()
    start = time.perf_counter()
    samples, statuses = asyncio.run(_clients(token, next_call, clients, seconds))
    wall = time.perf_counter() - start
    result: dict[str, object] = {
        "clients": clients,
        "requests": len(samples),
        "requests_per_second": round(len(samples) / wall, 1),
        "latency": summarize(samples),
        "statuses": dict(statuses),
        "server_cpu_seconds": round(processes.cpu_seconds(server.pids()) - server_cpu, 2),
        "client_cpu_seconds": round(_own_cpu() - own_cpu, 2),
        "wall_seconds": round(wall, 2),
    }
    return result


async def _clients(
    token: str, next_call: Callable[[], Call], clients: int, seconds: float
) -> tuple[list[float], Counter[int]]:
    samples: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        headers=headers, limits=httpx.Limits(max_connections=clients), timeout=30
    ) as client:
        await asyncio.gather(
            *(_client(client, next_call, deadline, samples, statuses) for _ in range(clients))
        )
    return samples, statuses


async def _client(
    client: httpx.AsyncClient,
    next_call: Callable[[], Call],
    deadline: float,
    samples: list[float],
    statuses: Counter[int],
) -> None:
    while time.perf_counter() < deadline:
        call = next_call()
        start = time.perf_counter()
        response = await client.request(call.method, call.url, json=call.json, params=call.params)
        samples.append(time.perf_counter() - start)
        statuses[response.status_code] += 1
        if response.status_code != call.expect:
            raise Unexpected(f"{call.method} {call.url}: {response.status_code} {response.text}")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(ctx: Context) -> dict[str, object]:
    # httpx logs every request at INFO: thousands of lines under `python -m bench -v`.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return measure(
        ctx.database,
        ctx.pg_url,
        ctx.workdir,
        ApiOptions(seconds=env_float("BENCH_API_SECONDS", 8.0)),
    )


def markdown(document: dict[str, Any]) -> str:
    """One row per database and round: requests per second and latency."""
    lines = [
        "| database | requests | clients | req/s | p50 | p99 | statuses |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for database, result in document["databases"].items():
        if "error" in result:
            lines.append(f"| {database} | {result['error']} | | | | | |")
            continue
        for name, r in result.items():
            if not isinstance(r, dict) or "requests_per_second" not in r:
                continue
            what = "POST aliases" if name.startswith("create") else "GET /v1/route"
            latency = r["latency"]
            lines.append(
                f"| {database} | {what} | {r['clients']} | {r['requests_per_second']} "
                f"| {latency['p50_ms']} ms | {latency['p99_ms']} ms | {r['statuses']} |"
            )
    return "\n".join(lines)
