"""serve's child processes: the delivery worker, and SMTP processes beyond its own.

One Python process uses one core. ``serve`` keeps the API and one SMTP listener itself,
runs the delivery worker as a child (``mailroute worker``), and, where SMTP_PROCESSES
asks for more, further ``mailroute smtp`` children that share the SMTP port through
SO_REUSEPORT (the kernel spreads new connections over the listeners). Whoever stores
mail wakes the worker through a pipe, as Postfix's cleanup wakes qmgr through a FIFO.

A child that dies is started again, and the deliveries it had claimed go back to the
queue at once rather than when their lease runs out. SIGTERM to serve stops every child
(SMTP children finish their open sessions first). A worker child dies with serve; an
SMTP child left behind by a killed serve stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # seconds before a child that died is started again
ORPHAN_CHECK = 1.0  # seconds between an SMTP child's checks that serve still runs
WAKE_FD_OPTION = "--wake-fd"
PR_SET_PDEATHSIG = 1  # prctl(2)


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def wake_pipe() -> tuple[int, int]:
    """(read end, write end); children are handed one end explicitly (pass_fds)."""
    return os.pipe2(os.O_CLOEXEC)


def pipe_waker(fd: int) -> Callable[[], None]:
    """``on_queued`` for a writer of the pipe: one byte (never blocks; a full pipe
    already holds a wake-up, and a worker gone is restarted and looks anyway)."""
    os.set_blocking(fd, False)

    def wake() -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(fd, b"\0")

    return wake


def watch_pipe(fd: int, wake: Callable[[], None], closed: Callable[[], None]) -> None:
    """In the worker child: call ``wake`` whenever something comes down the pipe, and
    ``closed`` once every writer is gone (serve and its SMTP children: the worker is an
    orphan, e.g. serve was killed before the worker's parent-death signal was armed).
    At the end of the pipe the descriptor stays readable: watched on, it would wake the
    loop for ever (an orphaned worker was found spinning on a core)."""
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            while chunk := os.read(fd, 4096):
                del chunk
        except BlockingIOError:
            wake()  # drained: every writer may write again
            return
        loop.remove_reader(fd)  # read() gave b"": the end of the pipe
        log.warning("serve is gone (its wake-up pipe closed); this worker stops")
        closed()

    loop.add_reader(fd, readable)


def die_with_parent() -> None:
    """In the worker child: be killed with serve, as a single process would be, so that
    the next serve's worker never sends beside a leftover one (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


async def stop_when_orphaned(stop: asyncio.Event) -> None:
    """In an SMTP child: stop (finishing open sessions) once serve is gone, even if it
    was killed with no chance to stop us; the next serve starts children of its own."""
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("serve (pid %d) is gone; this SMTP process stops", parent)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ORPHAN_CHECK)


@dataclass(frozen=True)
class Child:
    name: str
    command: Sequence[str]  # the `mailroute` subcommand and its options
    pass_fds: Sequence[int] = ()


async def supervise(
    child: Child,
    stop: asyncio.Event,
    grace: float,
    on_death: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Keep ``child`` running until ``stop``, then SIGTERM it and wait up to ``grace``
    (plus a margin) before killing it. ``on_death(pid)`` cleans up after a child that
    died on its own, before it is started again."""
    while not stop.is_set():
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", *child.command, pass_fds=tuple(child.pass_fds)
        )
        log.info("%s started (pid %d)", child.name, process.pid)
        exited = asyncio.ensure_future(process.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if exited.done():
            log.error(
                "%s (pid %d) exited with %s; starting it again",
                child.name,
                process.pid,
                exited.result(),
            )
            if on_death is not None:
                await on_death(process.pid)
            await asyncio.sleep(RESTART_DELAY)
            continue
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(exited, grace + 10)
        except TimeoutError:
            log.warning("%s (pid %d) did not stop; killing it", child.name, process.pid)
            process.kill()
            await exited
