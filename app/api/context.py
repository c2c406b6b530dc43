"""What the API needs from the process that runs it, built once by the entry point."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ratelimit import Clock, Rate
from app.resolver import Resolver
from app.routing.networks import GLOBAL_ONLY, DeliveryNetworks
from app.routing.srs import Srs
from app.services.destinations import MailIdentity
from app.services.signing_keys import KeySource


@dataclass(frozen=True, slots=True)
class ApiContext:
    sessionmaker: async_sessionmaker[AsyncSession]
    resolver: Resolver
    identity: MailIdentity
    # Where delivery may connect: a destination whose mail hosts are all outside is refused.
    delivery_networks: DeliveryNetworks = GLOBAL_ONLY
    # Wakes a delivery worker in the same process when mail is queued (serve).
    on_queued: Callable[[], None] | None = None
    # Requests per token, and failed authentications per client address; None: no limit.
    token_rate: Rate | None = None
    auth_failure_rate: Rate | None = None
    clock: Clock = time.monotonic
    # The server's own addresses, so /v1/route answers for them as RCPT does: SRS bounce
    # addresses (None: routed like any other address) and where postmaster goes.
    srs: Srs | None = None
    postmaster: str | None = None
    max_body_size: int = 1024 * 1024  # bytes of a request body; past it 413
    # Our DKIM signature's d= (None: the host name) and keys, for the DNS records to publish.
    signing_domain: str | None = None
    signing_keys: KeySource = KeySource()
