"""RCPT TO decision latency, measured two ways: the routing unit the SMTP handler runs
(in this process, against the database directly) and whole RCPT round trips over SMTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from app.db.engine import create_engine
from app.db.reader import create_reader
from app.routing.srs import Srs
from app.services import routes
from bench.latency import summarize
from bench.probes import EXPECTED, Probe, by_kind
from bench.smtpclient import SmtpClient

HOST = "127.0.0.1"
SENDER = "MAIL FROM:<someone@sender.example.com>"
# mailroute accepts 100 recipients per transaction (RFC 5321's minimum); RSET before that.
RSET_EVERY = 90
# RSET past 100 in a session counts as an error (smtpd_junk_command_limit): reconnect first.
RSETS_PER_SESSION = 80
WARM_UP = 200


async def in_process(database_url: str, items: Sequence[Probe], srs: Srs) -> dict[str, object]:
    """p50/p99 of ``routes.route`` through the database's reader per kind of address,
    exactly the look-up ``InboundHandler.handle_RCPT`` makes (its activity row for a
    refusal is written in the background)."""
    engine = create_engine(database_url)
    reader = create_reader(engine)
    samples: dict[str, list[float]] = {}
    outcomes: Counter[str] = Counter()
    try:
        for number, item in enumerate([*items[:WARM_UP], *items]):
            start = time.perf_counter()
            _address, decision = await routes.route(reader, item.address, srs=srs)
            elapsed = time.perf_counter() - start
            if number < WARM_UP:
                continue
            samples.setdefault(item.kind, []).append(elapsed)
            got = decision.refusal.value if decision.refusal else decision.outcome.value
            outcomes[f"{item.kind}:{got}"] += 1
            if got != EXPECTED[item.kind]:
                raise AssertionError(f"{item.address}: decided {got}, expected {item.kind}")
    finally:
        await reader.dispose()
        await engine.dispose()
    result: dict[str, object] = {kind: summarize(s) for kind, s in samples.items()}
    result["all"] = summarize([x for s in samples.values() for x in s])
    result["outcomes"] = dict(outcomes)
    return result


async def over_smtp(port: int, items: Sequence[Probe], sessions: int) -> dict[str, object]:
    """RCPT round trips from ``sessions`` concurrent SMTP sessions sharing ``items``."""
    samples: dict[str, list[float]] = {}
    replies: Counter[str] = Counter()
    shares = [items[k::sessions] for k in range(sessions)]
    start = time.perf_counter()
    await asyncio.gather(*(_session(port, share, samples, replies) for share in shares))
    wall = time.perf_counter() - start
    result: dict[str, object] = {kind: summarize(s) for kind, s in samples.items()}
    result["all"] = summarize([x for s in samples.values() for x in s])
    result["sessions"] = sessions
    result["replies"] = dict(replies)
    result["rcpt_per_second"] = round(len(items) / wall, 1)
    return result


async def _session(
    port: int, items: Sequence[Probe], samples: dict[str, list[float]], replies: Counter[str]
) -> None:
    per_session = RSET_EVERY * RSETS_PER_SESSION
    for first in range(0, len(items), per_session):
        client = await SmtpClient.connect(HOST, port)
        try:
            await _transactions(client, items[first : first + per_session], samples, replies)
        finally:
            await client.close()


async def _transactions(
    client: SmtpClient,
    items: Sequence[Probe],
    samples: dict[str, list[float]],
    replies: Counter[str],
) -> None:
    await client.expect(await client.command(SENDER), 250)
    accepted = 0
    for item in items:
        if accepted >= RSET_EVERY:
            await client.expect(await client.command("RSET"), 250)
            await client.expect(await client.command(SENDER), 250)
            accepted = 0
        start = time.perf_counter()
        reply = await client.command(f"RCPT TO:<{item.address}>")
        samples.setdefault(item.kind, []).append(time.perf_counter() - start)
        replies[f"{item.kind}:{reply.code}"] += 1
        accepted += reply.code == 250


def kinds(items: Sequence[Probe]) -> dict[str, int]:
    return {kind: len(group) for kind, group in by_kind(items).items()}
