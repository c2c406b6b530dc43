"""What a server costs, read from /proc (proc(5)): its process tree, CPU time and memory."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; it ends at the last ")".
    return text.rpartition(")")[2].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def in_group(group: int) -> list[int]:
    """Live processes of process group ``group`` (Postfix's daemons share their master's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            if fields[0] != "Z" and int(fields[2]) == group:
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time of ``pids``, including their waited-for children's
    (cutime/cstime), so Postfix daemons that exited during a round still count."""
    ticks = 0
    for pid in pids:
        if fields := _stat_fields(pid):
            # utime, stime, cutime, cstime are stat fields 14-17, here [11:15].
            ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLOCK_TICKS


def cpu_seconds_each(pids: Iterable[int]) -> dict[int, float]:
    """Like cpu_seconds, per process: a pool's connections come and go during a round."""
    return {pid: cpu_seconds([pid]) for pid in pids}


def _status_kib(pid: int, key: str) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(*pids: int) -> int:
    """Resident memory (VmRSS) of ``pids``, summed, in KiB."""
    return sum(_status_kib(pid, "VmRSS") for pid in pids)


def peak_rss_kib(*pids: int) -> int:
    """Peak resident memory (VmHWM) of ``pids``, summed, in KiB."""
    return sum(_status_kib(pid, "VmHWM") for pid in pids)


def pss_kib(*pids: int) -> int:
    """Proportional set size of ``pids``, summed, in KiB: shared pages divided among the
    processes mapping them, so a tree of daemons sharing libraries is not counted N times."""
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("Pss:"))
    return total
