"""The orchestrator: ``python -m bench [options]`` runs the chosen parts on each database,
writes ``bench/results/<part>.json`` and prints a Markdown table per part.

Each part is a module ``bench.<part>`` with ``run(ctx) -> dict`` (plain or ``async``),
called once per database with a fresh work directory; what it returns and what it
``ctx.emit``\\s go into its JSON file under the database's name.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import report
from bench.context import Context, Options

log = logging.getLogger("bench")

PARTS = ("forwarding", "routing", "large", "api", "checks", "signing")
DATABASES = ("sqlite", "postgresql")
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/mailroute_bench"
# Sized so the whole suite fits in 15 minutes on a 2-core machine: at 1 session mailroute
# forwards about 30 messages a second (the 20,000 per cell: --messages 20000).
DEFAULT_MESSAGES = 6000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", type=names(PARTS), default=list(PARTS), help="parts to run")
    parser.add_argument(
        "--messages", type=int, default=DEFAULT_MESSAGES, help="messages per cell, all rounds"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server and cell")
    parser.add_argument("--sessions", type=numbers, default=[1, 10, 50], help="e.g. 1,10,50")
    parser.add_argument("--databases", type=names(DATABASES), default=list(DATABASES))
    parser.add_argument("--pg-url", default=PG_URL, help="a database the bench drops and creates")
    parser.add_argument(
        "--reuse-sessions", action="store_true", help="send every message of a session over one"
    )
    parser.add_argument("--results", type=Path, default=report.RESULTS, help="JSON goes here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every round")
    return parser.parse_args(argv)


def names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        chosen = [n.strip() for n in text.split(",") if n.strip()]
        if unknown := [n for n in chosen if n not in allowed]:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(allowed)}")
        return chosen

    return parse


def numbers(text: str) -> list[int]:
    try:
        return [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not numbers separated by commas") from None


def load_part(name: str) -> ModuleType | None:
    """The module of a part, or None when it is not there yet.

    Hook: routing, large and api are written separately; each becomes part of the suite
    once ``bench/<name>.py`` exists and defines ``run(ctx)``.
    """
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{name}":
            return None
        raise
    return module if callable(getattr(module, "run", None)) else None


def run_part(module: ModuleType, ctx: Context) -> dict[str, Any]:
    result = module.run(ctx)
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    return dict(result or {})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if {"forwarding", "checks", "signing"} & set(args.only) and os.geteuid() != 0:
        # master(8) starts its daemons as the postfix user and smtp-sink drops to nobody.
        sys.stderr.write(
            "bench: the forwarding, checks and signing parts need root (Postfix, smtp-sink)\n"
        )
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("bench").setLevel(logging.INFO)
    # A stop by SIGTERM cleans up like ^C: every server started is stopped on the way out.
    signal.signal(signal.SIGTERM, interrupt)
    options = Options(args.messages, args.rounds, args.sessions, args.reuse_sessions)
    machine = report.machine(args.databases, args.pg_url)
    workdir = Path(tempfile.mkdtemp(prefix="mailroute-bench-"))
    # Postfix's daemons, running as the postfix user, must reach their queue below it.
    workdir.chmod(0o711)
    started, failed, tables = time.monotonic(), False, []
    try:
        for name in args.only:
            module = load_part(name)
            if module is None:
                log.warning("part %s: no bench/%s.py with run(ctx) yet, skipped", name, name)
                continue
            document, error = run_databases(name, module, args, options, workdir)
            document = {"part": name, "machine": machine, "options": vars(options)} | document
            path = report.write(name, document, args.results)
            log.info("part %s: results in %s", name, path)
            tables.append(table(name, module, document))
            if error:
                failed = True
                log.error("part %s failed: %s", name, error)
    finally:
        if args.keep:
            log.warning("work directory kept: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.write(f"\n{report.describe_machine(machine)}\n\n")
    sys.stdout.write("\n\n".join(tables) + "\n")
    sys.stdout.write(f"\n{time.monotonic() - started:.0f} s in all\n")
    return 1 if failed else 0


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_databases(
    name: str, module: ModuleType, args: argparse.Namespace, options: Options, workdir: Path
) -> tuple[dict[str, Any], str | None]:
    """Run a part on each database; what it produced, and the error that stopped it."""
    databases: dict[str, dict[str, Any]] = {}
    for database in args.databases:
        results = databases.setdefault(database, {})
        part_dir = workdir / name / database
        part_dir.mkdir(parents=True)
        part_dir.parent.chmod(0o711)
        part_dir.chmod(0o711)
        ctx = Context(part_dir, database, args.pg_url, options, emit=results.__setitem__)
        log.info("part %s on %s", name, database)
        begun = time.monotonic()
        try:
            results.update(run_part(module, ctx))
        except Exception as exc:  # one part's failure must not lose the others' results
            log.exception("part %s on %s", name, database)
            results["error"] = f"{type(exc).__name__}: {exc}"
            return {"databases": databases}, results["error"]
        results["seconds"] = round(time.monotonic() - begun, 1)
    return {"databases": databases}, None


def table(name: str, module: ModuleType, document: dict[str, Any]) -> str:
    """A part's Markdown table: its own ``markdown(document)`` if it has one."""
    if name == "forwarding":
        body = report.forwarding_table(document["databases"])
    elif callable(markdown := getattr(module, "markdown", None)):
        body = str(markdown(document))
    else:
        body = f"(see {report.RESULTS.name}/{name}.json)"
    return f"### {name}\n\n{body}"
