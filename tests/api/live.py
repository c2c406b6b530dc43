"""The API under a real uvicorn, started by app.api.server.run_api as `mailroute api` starts
it, on a free port of 127.0.0.1: for what only a real server shows (the peer's address,
proxy headers, the access log, a body that streams in)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.server import run_api
from app.config import load_settings
from app.resolver import Resolver
from tests.conftest import HOSTNAME, PUBLIC_URL
from tests.peers.tools import free_port

START_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def live_api(
    sessionmaker: async_sessionmaker[AsyncSession], resolver: Resolver, **settings: object
) -> AsyncIterator[str]:
    """Serve the API with ``settings`` (over the defaults); yields its base URL."""
    port = free_port()
    values: dict[str, object] = {
        "api_host": "127.0.0.1",
        "api_port": port,
        "hostname": HOSTNAME,
        "public_url": PUBLIC_URL,
        "log_level": "INFO",
        "trusted_proxies": "",
        **settings,
    }
    stop = asyncio.Event()
    record_factory = logging.getLogRecordFactory()  # run_api installs its own
    serving = asyncio.create_task(run_api(load_settings(**values), sessionmaker, resolver, stop))
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _until_up(base_url, serving)
        yield base_url
    finally:
        stop.set()
        await asyncio.wait_for(serving, START_TIMEOUT)
        logging.setLogRecordFactory(record_factory)


async def _until_up(base_url: str, serving: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=base_url) as client:
        while True:
            if serving.done():
                serving.result()  # raises what stopped it
                raise RuntimeError("the API stopped before it was up")
            try:
                await client.get("/healthz")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
