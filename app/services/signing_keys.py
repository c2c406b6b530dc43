"""The DKIM keys every node signs with, shared through the database like the SRS secret.

They are kept as one JSON list in the ``kv`` table: the active keys (an RSA key, and an
Ed25519 one for an optional second signature, RFC 8463) and those a rotation retired,
whose records stay published for a grace period so that mail they signed still verifies
when it arrives. The first node to need keys generates them; nodes starting together
agree on one set (the kv row's primary key decides, as for the SRS secret). A key file
(MAILROUTE_DKIM_KEY_FILE) takes the place of the stored keys.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import KeyValue
from app.services import server_state
from app.signing.keys import (
    SigningKey,
    dated_selector,
    generate_ed25519,
    generate_rsa,
    load_pem,
)

log = logging.getLogger(__name__)

DKIM_KEYS_KEY = "dkim_keys"
ED25519_SUFFIX = "-ed"  # the Ed25519 key's selector: its record needs a name of its own
DEFAULT_GRACE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where the keys come from, and how long a retired one stays published: the
    DKIM_SELECTOR, DKIM_KEY_FILE and DKIM_ROTATION_GRACE_DAYS settings."""

    selector: str | None = None
    key_file: Path | None = None
    grace: timedelta = DEFAULT_GRACE

    async def active(self, session: AsyncSession, now: datetime) -> list[SigningKey]:
        return await active_keys(session, now=now, selector=self.selector, key_file=self.key_file)

    async def published(self, session: AsyncSession, now: datetime) -> list[SigningKey]:
        return await published(
            session, now, self.grace, selector=self.selector, key_file=self.key_file
        )


async def active_keys(
    session: AsyncSession,
    *,
    now: datetime,
    selector: str | None = None,
    key_file: Path | None = None,
) -> list[SigningKey]:
    """The keys to sign with, RSA first: the key file's, or the stored ones (generated on
    first use, named ``selector`` or dated). Raises SigningKeyInvalid for a bad key file."""
    if key_file is not None:
        return [load_pem(key_file, selector, now)]
    return [key for key in await _stored_or_generated(session, now, selector) if _active(key)]


async def published(
    session: AsyncSession,
    now: datetime,
    grace: timedelta,
    *,
    selector: str | None = None,
    key_file: Path | None = None,
) -> list[SigningKey]:
    """The keys whose records must be in DNS: the active ones, and those retired less than
    ``grace`` ago (a message they signed may still be on its way)."""
    if key_file is not None:
        return await active_keys(session, now=now, selector=selector, key_file=key_file)
    return [
        key
        for key in await _stored_or_generated(session, now, selector)
        if key.retired_at is None or key.retired_at + grace > now
    ]


async def rotate(
    session: AsyncSession, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> list[SigningKey]:
    """New keys under a new dated selector; the active ones are retired as of ``now``, and
    those retired ``grace`` ago or more are dropped (no record of theirs is needed any
    more). Returns the new keys. Two rotations at once: one wins, the other returns its
    keys."""
    current = await _stored_or_generated(session, now, None)
    selector = _unused_selector(dated_selector(now), {key.selector for key in current})
    fresh = _new_keys(selector, now)
    retired = [
        key if key.retired_at else _retire(key, now)
        for key in current
        if key.retired_at is None or key.retired_at + grace > now
    ]
    swapped = await session.execute(
        update(KeyValue)
        .where(KeyValue.key == DKIM_KEYS_KEY, KeyValue.value == _dump(current))
        .values(value=_dump(retired + fresh))
        .execution_options(synchronize_session=False)
    )
    if swapped.rowcount != 1:  # type: ignore[attr-defined]
        log.info("DKIM keys rotated by another node at the same time; keeping its keys")
        session.expire_all()
        return [key for key in await _stored_or_generated(session, now, None) if _active(key)]
    log.info("DKIM keys rotated: new selector %s", selector)
    return fresh


async def _stored_or_generated(
    session: AsyncSession, now: datetime, selector: str | None
) -> list[SigningKey]:
    stored = await server_state.load(session, DKIM_KEYS_KEY)
    if stored is None:
        keys = _new_keys(selector or dated_selector(now), now)
        try:
            async with session.begin_nested():
                await server_state.store(session, DKIM_KEYS_KEY, _dump(keys))
            log.info("DKIM keys generated: selector %s", keys[0].selector)
        except IntegrityError:  # another node stored its keys first: use those
            session.expire_all()
            stored = await server_state.load(session, DKIM_KEYS_KEY)
            assert stored is not None
    return keys if stored is None else _load(stored)


def _new_keys(selector: str, now: datetime) -> list[SigningKey]:
    return [generate_rsa(selector, now), generate_ed25519(selector + ED25519_SUFFIX, now)]


def _unused_selector(base: str, taken: set[str]) -> str:
    """``base``, or with b, c, ... appended when a key of this month already has it."""
    candidate, letter = base, ord("b")
    while candidate in taken or candidate + ED25519_SUFFIX in taken:
        candidate, letter = f"{base}{chr(letter)}", letter + 1
    return candidate


def _active(key: SigningKey) -> bool:
    return key.retired_at is None


def _retire(key: SigningKey, now: datetime) -> SigningKey:
    return SigningKey(key.selector, key.algorithm, key.private_key, key.created_at, now)


def _dump(keys: list[SigningKey]) -> str:
    return json.dumps(
        [
            {
                "selector": key.selector,
                "algorithm": key.algorithm,
                "private_key": key.private_key.decode("ascii"),
                "created_at": key.created_at.isoformat(),
                "retired_at": key.retired_at.isoformat() if key.retired_at else None,
            }
            for key in keys
        ]
    )


def _load(text: str) -> list[SigningKey]:
    items: list[dict[str, Any]] = json.loads(text)
    return [
        SigningKey(
            item["selector"],
            item["algorithm"],
            item["private_key"].encode("ascii"),
            datetime.fromisoformat(item["created_at"]),
            datetime.fromisoformat(item["retired_at"]) if item["retired_at"] else None,
        )
        for item in items
    ]
