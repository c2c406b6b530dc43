"""The delivery worker's signing (app.delivery.worker.Signing): our DKIM signature and ARC
seal (app.signing.sign) with the keys every node shares (app.services.signing_keys).

The keys are read again every REFRESH seconds, so that a rotation by any node (``mailroute
dkim rotate``) reaches every worker within that time. dkimpy is Python, CPU-bound: each
message is signed in a thread, so the event loop keeps its connections going.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.engine import session_scope
from app.db.errors import OUTAGE_ERRORS
from app.db.types import utcnow
from app.errors import SigningError
from app.services.signing_keys import KeySource
from app.signing.sign import Signer

REFRESH = 60.0


class LiveSigning:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        source: KeySource,
        *,
        domain: str,
        authserv_id: str | None,  # None: no ARC seal
        dkim: bool,
        clock: Callable[[], datetime] = utcnow,
        refresh: float = REFRESH,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.source = source
        self.domain = domain
        self.authserv_id = authserv_id
        self.dkim = dkim
        self.clock = clock
        self.refresh = refresh
        self._signers: tuple[Signer, Signer] | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def fields(self, content: bytes, *, checked: bool) -> bytes:
        sealing, unsealed = await self._current()
        signer = sealing if checked else unsealed
        return await asyncio.to_thread(signer.fields, content)

    async def _current(self) -> tuple[Signer, Signer]:
        """The signers of the current keys (with and without the seal); raises
        SigningError for keys that cannot be used, SigningKeyInvalid for a bad key file."""
        async with self._lock:
            if self._signers is None or time.monotonic() - self._loaded_at > self.refresh:
                try:
                    async with session_scope(self.sessionmaker) as session:
                        keys = await self.source.active(session, self.clock())
                except OUTAGE_ERRORS as exc:
                    if self._signers is None:
                        raise SigningError(f"the keys cannot be read: {exc!r}") from exc
                    return self._signers  # the keys of a minute ago still sign
                self._signers = (
                    Signer(self.domain, self.authserv_id, keys, self.dkim),
                    Signer(self.domain, None, keys, self.dkim),
                )
                self._loaded_at = time.monotonic()
            return self._signers


def live_signing(s: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> LiveSigning | None:
    """The worker's signing as DKIM_SIGN and ARC_SEAL say; None when both are off."""
    if not (s.dkim_sign or s.arc_seal):
        return None
    source = KeySource(s.dkim_selector, s.dkim_key_file, s.dkim_rotation_grace)
    return LiveSigning(
        sessionmaker,
        source,
        domain=s.signing_domain,
        authserv_id=s.hostname if s.arc_seal else None,
        dkim=s.dkim_sign,
    )
