"""More SMTP processes for ``serve``: one Python process uses one core, so ``serve``
starts SMTP_PROCESSES - 1 ``mailroute smtp`` children beside its own listener. They
share the port through SO_REUSEPORT (the kernel spreads new connections over the
listeners) and the database; each stores what it accepts, and tells the parent's
delivery worker through a pipe that there is new mail, as Postfix's cleanup tells qmgr
through a FIFO. A child that dies is started again; SIGTERM to serve stops them all,
each finishing its open sessions first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # seconds before a child that died is started again
ORPHAN_CHECK = 1.0  # seconds between a child's checks that serve still runs
WAKE_FD_OPTION = "--wake-fd"


def reuse_port_supported() -> bool:
    import socket

    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def pipe_waker(fd: int) -> Callable[[], None]:
    """``on_queued`` for a child: one byte down the pipe (never blocks; a full pipe
    already holds a wake-up)."""

    def wake() -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(fd, b"\0")

    os.set_blocking(fd, False)
    return wake


async def stop_when_orphaned(stop: asyncio.Event) -> None:
    """In a child: stop (finishing open sessions) once serve is gone, even if it was
    killed with no chance to stop us; the new serve starts children of its own."""
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("serve (pid %d) is gone; this SMTP process stops", parent)
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ORPHAN_CHECK)


async def run_children(
    count: int, wake: Callable[[], None], stop: asyncio.Event, shutdown_timeout: float
) -> None:
    """Keep ``count`` ``mailroute smtp`` children running until ``stop``; ``wake`` is
    called whenever one of them has queued mail."""
    if count <= 0:
        return
    if not reuse_port_supported():
        log.warning("SMTP_PROCESSES > 1 needs SO_REUSEPORT (Linux); one process serves SMTP")
        return
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    loop = asyncio.get_running_loop()

    def woken() -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(read_end, 4096):
                pass
        wake()

    loop.add_reader(read_end, woken)
    try:
        await asyncio.gather(
            *(_supervise(n, write_end, stop, shutdown_timeout) for n in range(count))
        )
    finally:
        loop.remove_reader(read_end)
        os.close(read_end)
        os.close(write_end)


async def _supervise(number: int, wake_fd: int, stop: asyncio.Event, grace: float) -> None:
    while not stop.is_set():
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "smtp",
            WAKE_FD_OPTION,
            str(wake_fd),
            pass_fds=(wake_fd,),
        )
        log.info("SMTP process %d started (pid %d)", number, child.pid)
        exited = asyncio.ensure_future(child.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if exited.done():
            log.error(
                "SMTP process %d (pid %d) exited with %s; starting it again",
                number,
                child.pid,
                exited.result(),
            )
            await asyncio.sleep(RESTART_DELAY)
            continue
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(exited, grace + 10)
        except TimeoutError:
            log.warning("SMTP process %d (pid %d) did not stop; killing it", number, child.pid)
            child.kill()
            await exited
