"""The worker's signing as the settings make it (app.runtime.signing.live_signing)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import load_settings
from app.runtime.signing import live_signing


@pytest.mark.parametrize(
    ("dkim_sign", "arc_seal", "expected"),
    [
        (True, True, (True, "mx.example.org")),
        (True, False, (True, None)),
        (False, True, (False, "mx.example.org")),
        (False, False, None),
    ],
)
def test_live_signing_follows_dkim_sign_and_arc_seal(
    sessionmaker: async_sessionmaker[AsyncSession],
    dkim_sign: bool,
    arc_seal: bool,
    expected: tuple[bool, str | None] | None,
) -> None:
    settings = load_settings(hostname="mx.example.org", dkim_sign=dkim_sign, arc_seal=arc_seal)
    signing = live_signing(settings, sessionmaker)
    made = None if signing is None else (signing.dkim, signing.authserv_id)
    assert made == expected
    assert signing is None or signing.domain == "mx.example.org"  # SIGNING_DOMAIN's default
