"""The ``serve`` role: the API and one SMTP listener in this process; the delivery worker
and any further SMTP processes (SMTP_PROCESSES) as children it supervises, all woken
through one pipe (app.supervisor)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

from app import supervisor
from app.db.errors import OUTAGE_ERRORS
from app.runtime import Runtime, api, smtp, together
from app.runtime.worker import release_claims


async def run(rt: Runtime, stop: asyncio.Event) -> None:
    s = rt.settings
    if rt.engine.dialect.name == "sqlite":
        await release_claims(rt)  # before any child runs: whatever is claimed is stale
    read_end, write_end = supervisor.wake_pipe()
    wake = supervisor.pipe_waker(write_end)
    children = _children(read_end, write_end, s.smtp_process_count)
    release_dead = _claims_releaser(rt)
    await together(
        stop,
        *(supervisor.supervise(c, stop, s.shutdown_timeout, release_dead) for c in children),
        smtp.listen(rt, stop, wake),
        api.listen(rt, stop, wake),
    )


def _children(read_end: int, write_end: int, smtp_processes: int) -> list[supervisor.Child]:
    """The worker reads the wake pipe; SMTP children beyond this process write to it."""
    wake_fd = supervisor.WAKE_FD_OPTION
    worker = supervisor.Child("delivery worker", ["worker", wake_fd, str(read_end)], [read_end])
    return [worker] + [
        supervisor.Child(f"SMTP process {n}", ["smtp", wake_fd, str(write_end)], [write_end])
        for n in range(1, smtp_processes)
    ]


def _claims_releaser(rt: Runtime) -> Callable[[int], Awaitable[None]]:
    """Put back, at once, what a child that died had claimed (not when the lease ends)."""
    host = socket.gethostname()

    async def release_dead(pid: int) -> None:
        # DeliveryWorker ids are host:pid:random.
        with contextlib.suppress(*OUTAGE_ERRORS):
            await release_claims(rt, f"{host}:{pid}:")

    return release_dead
