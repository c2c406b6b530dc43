"""The management API under uvicorn, as one part of a running mailroute (app.runtime)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp

from app.api import redaction
from app.api.app import create_app
from app.api.context import ApiContext
from app.config import Settings
from app.ratelimit import Rate
from app.resolver import Resolver
from app.routing.networks import DeliveryNetworks
from app.routing.srs import Srs
from app.services.destinations import MailIdentity
from app.services.signing_keys import KeySource


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
    *,
    srs: Srs | None = None,
    networks: DeliveryNetworks | None = None,
) -> None:
    token_rate, auth_failure_rate = api_rates(s)
    context = ApiContext(
        sessionmaker=sessionmaker,
        resolver=resolver,
        identity=MailIdentity(hostname=s.hostname, public_url=s.public_url),
        delivery_networks=networks
        or DeliveryNetworks.for_listener(s.delivery_allowed_networks, s.smtp_host, s.smtp_port),
        on_queued=on_queued,
        token_rate=token_rate,
        auth_failure_rate=auth_failure_rate,
        srs=srs,
        postmaster=s.postmaster,
        max_body_size=s.api_max_body_size,
        signing_domain=s.signing_domain,
        signing_keys=KeySource(s.dkim_selector, s.dkim_key_file, s.dkim_rotation_grace),
    )
    redaction.install()
    server = EmbeddedServer(uvicorn_config(s, create_app(context)))
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    server.should_exit = True
    await serving


def uvicorn_config(s: Settings, app: ASGIApp) -> uvicorn.Config:
    """How the API is served. The client address (which the failed-authentication limit
    keys on) comes from X-Forwarded-For only when the peer is one of TRUSTED_PROXIES, and
    is then the last address in it that is not a trusted proxy's: uvicorn's own
    ProxyHeadersMiddleware. From anyone else the header is ignored, as a client can write
    any address in it."""
    return uvicorn.Config(
        app,
        host=s.api_host,
        port=s.api_port,
        log_level=s.log_level.lower(),
        proxy_headers=bool(s.trusted_proxies),
        # A list, even empty, so that uvicorn does not read FORWARDED_ALLOW_IPS instead.
        forwarded_allow_ips=list(s.trusted_proxies),
    )


def api_rates(s: Settings) -> tuple[Rate | None, Rate | None]:
    """Per token and per address for failures, from the settings (0: off); a minute's
    worth of failures may come at once."""
    failures = s.api_auth_failure_limit
    return (
        Rate(s.api_rate_limit, s.api_rate_burst) if s.api_rate_limit else None,
        Rate(failures, failures) if failures else None,
    )
