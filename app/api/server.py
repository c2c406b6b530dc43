"""The management API under uvicorn, as one part of a running mailroute (app.runtime)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.app import create_app
from app.api.context import ApiContext
from app.config import Settings
from app.ratelimit import Rate
from app.resolver import Resolver
from app.routing.networks import DeliveryNetworks
from app.services.destinations import MailIdentity


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: ours stops every part together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_api(
    s: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    resolver: Resolver,
    stop: asyncio.Event,
    on_queued: Callable[[], None] | None = None,
) -> None:
    token_rate, auth_failure_rate = api_rates(s)
    context = ApiContext(
        sessionmaker=sessionmaker,
        resolver=resolver,
        identity=MailIdentity(hostname=s.hostname, public_url=s.public_url),
        delivery_networks=DeliveryNetworks.for_listener(
            s.delivery_allowed_networks, s.smtp_host, s.smtp_port
        ),
        on_queued=on_queued,
        token_rate=token_rate,
        auth_failure_rate=auth_failure_rate,
    )
    config = uvicorn.Config(
        create_app(context),
        host=s.api_host,
        port=s.api_port,
        log_level=s.log_level.lower(),
        proxy_headers=False,
    )
    server = EmbeddedServer(config)
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    server.should_exit = True
    await serving


def api_rates(s: Settings) -> tuple[Rate | None, Rate | None]:
    """Per token and per address for failures, from the settings (0: off); a minute's
    worth of failures may come at once."""
    failures = s.api_auth_failure_limit
    return (
        Rate(s.api_rate_limit, s.api_rate_burst) if s.api_rate_limit else None,
        Rate(failures, failures) if failures else None,
    )
