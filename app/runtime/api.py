"""The ``api`` role: the management API (serve runs one :func:`listen` beside SMTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from app.routing.networks import DeliveryNetworks
from app.runtime import Runtime, load_srs, together


async def run(rt: Runtime, stop: asyncio.Event) -> None:
    """The API alone: whatever it queues waits for a worker's next look at the queue."""
    await together(stop, listen(rt, stop))


async def listen(
    rt: Runtime, stop: asyncio.Event, on_queued: Callable[[], None] | None = None
) -> None:
    """Serve the API until ``stop``; ``on_queued`` tells the delivery worker of new mail
    (the verification mail of a destination)."""
    # Imported here: FastAPI and uvicorn cost a process memory that the worker and SMTP
    # children need not carry (bench/large.py measures each process's peak size).
    from app.api.server import run_api

    s = rt.settings
    await run_api(
        s,
        rt.sessionmaker,
        rt.resolver,
        stop,
        on_queued,
        srs=await load_srs(rt),
        networks=DeliveryNetworks.for_destinations(
            s.delivery_allowed_networks, s.smtp_host, s.smtp_port, smarthost=bool(s.smarthost)
        ),
    )
