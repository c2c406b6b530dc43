"""app.services.signing_keys: the DKIM keys every node shares through the database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import SigningKeyInvalid
from app.services import server_state, signing_keys
from app.signing.keys import SigningKey, generate_rsa

NOW = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)
GRACE = timedelta(days=7)


def names(keys: list[SigningKey]) -> list[tuple[str, str]]:
    return [(key.selector, key.algorithm) for key in keys]


async def keys_of_a_node(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime = NOW
) -> list[SigningKey]:
    async with sessionmaker() as session, session.begin():
        return await signing_keys.active_keys(session, now=now)


async def test_active_keys_first_use_generates_and_stores(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    keys = await keys_of_a_node(sessionmaker)
    assert names(keys) == [("mr202612", "rsa-sha256"), ("mr202612-ed", "ed25519-sha256")]
    assert all(key.created_at == NOW and key.retired_at is None for key in keys)
    async with sessionmaker() as session:
        stored = await server_state.load(session, signing_keys.DKIM_KEYS_KEY)
    assert stored is not None
    assert [item["private_key"] for item in json.loads(stored)] == [
        key.private_key.decode() for key in keys
    ]


async def test_active_keys_later_use_keeps_the_stored_keys(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = await keys_of_a_node(sessionmaker)
    later = await keys_of_a_node(sessionmaker, NOW + timedelta(days=60))
    assert later == first


async def test_active_keys_configured_selector_names_the_generated_keys(
    session: AsyncSession,
) -> None:
    keys = await signing_keys.active_keys(session, now=NOW, selector="relay")
    assert names(keys) == [("relay", "rsa-sha256"), ("relay-ed", "ed25519-sha256")]


async def test_active_keys_key_file_replaces_the_stored_keys(
    session: AsyncSession, tmp_path: Path
) -> None:
    path = tmp_path / "dkim.pem"
    path.write_bytes(generate_rsa("x", NOW).private_key)
    keys = await signing_keys.active_keys(session, now=NOW, selector="mine", key_file=path)
    assert names(keys) == [("mine", "rsa-sha256")]
    assert keys[0].private_key == path.read_bytes()
    assert await server_state.load(session, signing_keys.DKIM_KEYS_KEY) is None


async def test_active_keys_bad_key_file_raises(session: AsyncSession, tmp_path: Path) -> None:
    path = tmp_path / "dkim.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningKeyInvalid):
        await signing_keys.active_keys(session, now=NOW, key_file=path)


async def test_active_keys_two_nodes_at_first_use_agree(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # One node generates and stores its keys but has not committed yet when the other
    # looks: that one sees no keys, generates its own and tries to store them. It waits
    # for the first to commit (PostgreSQL: the row's lock; SQLite: the write lock), then
    # must use the first node's keys, not its own.
    async with sessionmaker() as first_node:
        first = await signing_keys.active_keys(first_node, now=NOW)
        second = asyncio.create_task(keys_of_a_node(sessionmaker))
        await asyncio.sleep(0.5)
        assert not second.done()
        await first_node.commit()
    assert await asyncio.wait_for(second, 10) == first


async def test_active_keys_nodes_starting_together_agree(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    one, other = await asyncio.gather(keys_of_a_node(sessionmaker), keys_of_a_node(sessionmaker))
    assert one == other


async def test_rotate_retires_the_old_keys_and_makes_new_ones(session: AsyncSession) -> None:
    old = await signing_keys.active_keys(session, now=NOW)
    later = NOW + timedelta(days=40)
    fresh = await signing_keys.rotate(session, later)
    assert names(fresh) == [("mr202701", "rsa-sha256"), ("mr202701-ed", "ed25519-sha256")]
    assert await signing_keys.active_keys(session, now=later) == fresh
    assert {key.private_key for key in fresh}.isdisjoint(key.private_key for key in old)
    retired = [k for k in await signing_keys.published(session, later, GRACE) if k.retired_at]
    assert names(retired) == names(old)
    assert all(key.retired_at == later for key in retired)


async def test_rotate_in_the_same_month_adds_a_letter(session: AsyncSession) -> None:
    await signing_keys.active_keys(session, now=NOW)
    first = await signing_keys.rotate(session, NOW + timedelta(hours=1))
    second = await signing_keys.rotate(session, NOW + timedelta(hours=2))
    assert [key.selector for key in first] == ["mr202612b", "mr202612b-ed"]
    assert [key.selector for key in second] == ["mr202612c", "mr202612c-ed"]


async def test_rotate_before_any_key_still_rotates(session: AsyncSession) -> None:
    fresh = await signing_keys.rotate(session, NOW)
    assert [key.selector for key in fresh] == ["mr202612b", "mr202612b-ed"]
    assert await signing_keys.active_keys(session, now=NOW) == fresh


async def test_rotate_drops_the_keys_retired_a_grace_ago(session: AsyncSession) -> None:
    first = await signing_keys.active_keys(session, now=NOW)
    second = await signing_keys.rotate(session, NOW, GRACE)
    third = await signing_keys.rotate(session, NOW + GRACE - timedelta(seconds=1), GRACE)
    kept = await signing_keys.published(session, NOW, timedelta(days=3650))
    assert names(kept) == names(first) + names(second) + names(third)  # none past its grace
    fourth = await signing_keys.rotate(session, NOW + GRACE, GRACE)
    stored = await signing_keys.published(session, NOW, timedelta(days=3650))
    assert names(stored) == names(second) + names(third) + names(fourth)


async def test_published_keeps_retired_keys_within_the_grace(session: AsyncSession) -> None:
    old = await signing_keys.active_keys(session, now=NOW)
    fresh = await signing_keys.rotate(session, NOW)
    within = await signing_keys.published(session, NOW + GRACE - timedelta(seconds=1), GRACE)
    assert names(within) == names(old) + names(fresh)
    after = await signing_keys.published(session, NOW + GRACE, GRACE)
    assert after == fresh


async def test_published_with_a_key_file_is_that_key(session: AsyncSession, tmp_path: Path) -> None:
    path = tmp_path / "dkim.pem"
    path.write_bytes(generate_rsa("x", NOW).private_key)
    keys = await signing_keys.published(session, NOW, GRACE, selector="mine", key_file=path)
    assert names(keys) == [("mine", "rsa-sha256")]


async def test_rotate_two_at_once_lose_no_key(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # The second waits for the first's commit (PostgreSQL: the row's lock, then finds the
    # row changed and keeps the first's keys; SQLite: the write lock, then rotates again).
    await keys_of_a_node(sessionmaker)
    async with sessionmaker() as first_node:
        first = await signing_keys.rotate(first_node, NOW)

        async def rotate_on_another_node() -> list[SigningKey]:
            async with sessionmaker() as session, session.begin():
                return await signing_keys.rotate(session, NOW)

        second = asyncio.create_task(rotate_on_another_node())
        await asyncio.sleep(0.5)
        assert not second.done()
        await first_node.commit()
    second_keys = await asyncio.wait_for(second, 10)
    async with sessionmaker() as session:
        active = await signing_keys.active_keys(session, now=NOW)
        kept = await signing_keys.published(session, NOW, GRACE)
    assert active == second_keys
    kept_selectors = {key.selector for key in kept}
    assert {key.selector for key in first + second_keys} <= kept_selectors
    assert len(kept_selectors) == len(kept)  # no selector twice
