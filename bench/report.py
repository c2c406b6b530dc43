"""Results: the machine they were taken on, one JSON file per part, a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import service

RESULTS = Path(__file__).parent / "results"


def machine(databases: Sequence[str], pg_url: str) -> dict[str, Any]:
    """What the figures depend on: hardware, kernel, versions, and the commit measured."""
    description: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(mem_total_kib() / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postfix": command_output(["/usr/sbin/postconf", "-dh", "mail_version"]),
        "sqlite": sqlite3.sqlite_version,
        "git_commit": git_commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if "postgresql" in databases:
        description["postgresql"] = service.psql(pg_url, "SHOW server_version")
    return description


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def mem_total_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def command_output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def git_commit() -> str:
    """HEAD of the checkout measured, marked ``-dirty`` when app/ has uncommitted changes."""
    root = str(Path(__file__).parent.parent)
    commit = command_output(["git", "-C", root, "rev-parse", "--short=12", "HEAD"])
    dirty = command_output(["git", "-C", root, "status", "--porcelain", "--", "app"])
    return commit + ("-dirty" if dirty not in ("", "unknown") else "")


def write(part: str, document: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{part}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def describe_machine(description: dict[str, Any]) -> str:
    """One line for above a table."""
    parts = [
        f"{description['cpu']}, {description['cores']} cores, {description['ram_gib']} GiB RAM",
        f"Linux {description['kernel']}",
        f"Python {description['python']}",
        f"Postfix {description['postfix']}",
        f"SQLite {description['sqlite']}",
    ]
    if "postgresql" in description:
        parts.append(f"PostgreSQL {description['postgresql']}")
    parts.append(f"mailroute {description['git_commit']}, {description['date']}")
    return "; ".join(parts)


def forwarding_table(databases: dict[str, dict[str, Any]]) -> str:
    """The forwarding figures as a Markdown table: medians per cell and their ratios."""
    lines = [
        "| database | sessions | msgs/round | accepted/s mailroute | accepted/s Postfix | ratio"
        " | forwarded/s mailroute | forwarded/s Postfix | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for database, result in databases.items():
        for key, cell in result.items():
            if not key.startswith("sessions_"):
                continue
            mr, pf, ratio = cell["mailroute"], cell["postfix"], cell["ratio_mailroute_postfix"]
            lines.append(
                f"| {database} | {cell['sessions']} | {cell['messages_per_round']}"
                f" | {mr['accepted_per_s']:.1f} | {pf['accepted_per_s']:.1f}"
                f" | {ratio['accepted_per_s']:.2f}"
                f" | {mr['forwarded_per_s']:.1f} | {pf['forwarded_per_s']:.1f}"
                f" | {ratio['forwarded_per_s']:.2f} |"
            )
    return "\n".join(lines)
