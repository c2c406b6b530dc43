"""Watching the daemons a test peer runs: their process group, their port, their complaints."""

from __future__ import annotations

import errno
import os
import pty
import select
import signal
import socket
import subprocess
import time
from pathlib import Path


def processes_in_group(group: int) -> list[int]:
    """Live (not zombie) processes in process group ``group``, from /proc (proc(5))."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the ")" closing the command name: state, ppid, pgrp, ...
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(stat.parent.name))
    return found


def end_group(group: int, timeout: float) -> None:
    """Wait for the processes of ``group`` to exit, killing them if they take too long."""
    for attempt in range(2):
        deadline = time.monotonic() + timeout
        while processes_in_group(group):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return
        if attempt == 0:
            os.killpg(group, signal.SIGKILL)
    raise RuntimeError(f"processes left in group {group}: {processes_in_group(group)}")


def address_in_use(host: str, port: int) -> bool:
    """Whether a listening socket (or a wildcard one) already holds ``host:port``."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def greeting(host: str, port: int) -> bytes | None:
    """The first line an SMTP server on ``host:port`` sends (then QUIT), or None if none
    listens yet."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            with sock.makefile("rb") as reader:
                line = reader.readline()
                sock.sendall(b"QUIT\r\n")
                reader.readline()
                return line
    except OSError:
        return None


def terminal_output(args: list[str], timeout: float = 30.0) -> str:
    """What ``args`` writes on a terminal. Postfix commands report to stderr only when it is
    one; otherwise to syslog, which a test machine may not even have."""
    primary, secondary = pty.openpty()
    output = b""
    with subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary
    ) as process:
        os.close(secondary)
        deadline = time.monotonic() + timeout
        while select.select([primary], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            output += chunk
        os.close(primary)
        if process.poll() is None:
            process.kill()
    return output.decode(errors="replace").replace("\r\n", "\n")
