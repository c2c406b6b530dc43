"""app.runtime.load_srs: one SRS secret for every node sharing the database."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings, load_settings
from app.db.models import KeyValue
from app.routing.address import parse_address
from app.routing.srs import Srs, SrsInvalid
from app.runtime import load_srs, runtime
from app.services import server_state

HOSTNAME = "mx.example.org"
CONFIGURED_SECRET = "configured-srs-secret-0123456789"
SENDER = "alice@sender.example"

# Each runtime opens the test database by its URL; the engine fixture empties it first.
pytestmark = pytest.mark.usefixtures("engine")


def settings_for(database_url: str, srs_secret: str | None = None) -> Settings:
    # srs_secret is given either way, so that a MAILROUTE_SRS_SECRET in the environment
    # of whoever runs the tests cannot change what they test.
    return load_settings(database_url=database_url, hostname=HOSTNAME, srs_secret=srs_secret)


async def srs_of_a_node(database_url: str, srs_secret: str | None = None) -> Srs:
    """Start a node's runtime on the database, load its SRS, stop it again."""
    async with runtime(settings_for(database_url, srs_secret)) as rt:
        return await load_srs(rt)


async def stored_secret(sessionmaker: async_sessionmaker[AsyncSession]) -> str | None:
    async with sessionmaker() as session:
        return await server_state.load(session, server_state.SRS_SECRET_KEY)


def reverses(srs: Srs, rewritten: str) -> str | None:
    try:
        return srs.reverse(parse_address(rewritten))
    except SrsInvalid:
        return None


async def test_load_srs_without_secret_stores_a_generated_one(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert await stored_secret(sessionmaker) is None
    await srs_of_a_node(database_url)
    secret = await stored_secret(sessionmaker)
    assert secret is not None and len(secret) >= 32


async def test_load_srs_without_secret_uses_the_stored_one(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    srs = await srs_of_a_node(database_url)
    secret = await stored_secret(sessionmaker)
    assert secret is not None
    assert reverses(srs, Srs(secret, HOSTNAME).forward(SENDER)) == SENDER


async def test_load_srs_generates_a_fresh_secret_per_database(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await srs_of_a_node(database_url)
    first = await stored_secret(sessionmaker)
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(KeyValue))
    await srs_of_a_node(database_url)
    assert await stored_secret(sessionmaker) not in (None, first)


async def test_load_srs_second_node_keeps_the_first_secret(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await srs_of_a_node(database_url)
    first = await stored_secret(sessionmaker)
    await srs_of_a_node(database_url)
    assert await stored_secret(sessionmaker) == first


async def test_load_srs_one_node_reverses_what_another_rewrote(database_url: str) -> None:
    one = await srs_of_a_node(database_url)
    other = await srs_of_a_node(database_url)
    rewritten = one.forward(SENDER)
    assert rewritten.startswith("SRS0=") and rewritten.endswith(f"@{HOSTNAME}")
    assert reverses(other, rewritten) == SENDER


async def test_load_srs_nodes_starting_together_agree(database_url: str) -> None:
    one, other = await asyncio.gather(srs_of_a_node(database_url), srs_of_a_node(database_url))
    assert reverses(other, one.forward(SENDER)) == SENDER
    assert reverses(one, other.forward(SENDER)) == SENDER


async def test_load_srs_uses_the_configured_secret(database_url: str) -> None:
    srs = await srs_of_a_node(database_url, CONFIGURED_SECRET)
    assert reverses(srs, Srs(CONFIGURED_SECRET, HOSTNAME).forward(SENDER)) == SENDER


async def test_load_srs_configured_secret_rewrites_with_it(database_url: str) -> None:
    srs = await srs_of_a_node(database_url, CONFIGURED_SECRET)
    assert reverses(Srs(CONFIGURED_SECRET, HOSTNAME), srs.forward(SENDER)) == SENDER


async def test_load_srs_configured_secret_overrides_a_stored_one(database_url: str) -> None:
    generated = await srs_of_a_node(database_url)
    configured = await srs_of_a_node(database_url, CONFIGURED_SECRET)
    assert reverses(configured, generated.forward(SENDER)) is None


async def test_load_srs_rewrites_to_the_hostname(database_url: str) -> None:
    srs = await srs_of_a_node(database_url, CONFIGURED_SECRET)
    assert srs.domain == HOSTNAME
