"""An API client whose app asks a real DNS server (dnsmasq) for its live checks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.api.app import create_app
from app.api.context import ApiContext
from app.resolver import DnsResolver
from tests.peers.dnsmasq import Dnsmasq


@contextlib.asynccontextmanager
async def dnsmasq_client(
    api_context: ApiContext, dnsmasq: Dnsmasq, api_token: str, **context: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The test's API (its database and identity, ``context`` over them), resolving
    through ``dnsmasq``, with ``api_token`` on every request."""
    app_context = ApiContext(
        sessionmaker=api_context.sessionmaker,
        resolver=DnsResolver([(dnsmasq.host, dnsmasq.port)], lifetime=3),
        identity=api_context.identity,
        **context,
    )
    transport = httpx.ASGITransport(app=create_app(app_context))
    headers = {"Authorization": f"Bearer {api_token}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://mailroute.test", headers=headers
    ) as client:
        yield client
