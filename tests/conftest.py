"""Fixtures shared by all tests.

Every database test runs twice: on SQLite (a fresh copy of a migrated file) and on
PostgreSQL (``MAILROUTE_TEST_DATABASE_URL``, emptied before each test). Without that
variable the PostgreSQL runs skip with a message; in CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.api.app import create_app
from app.api.context import ApiContext
from app.db import migrate
from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.db.models import Base
from app.resolver import MxRecord
from app.services import tokens
from app.services.destinations import MailIdentity
from tests.fakes import FakeResolver
from tests.peers.dnsmasq import Dnsmasq, Zone
from tests.peers.tools import IN_CI

# Registered once as a plugin: its session-scoped Postfix owns 127.0.0.2:25.
pytest_plugins = ["tests.peers.postfix"]

# The tests' senders (example.com and the like) publish no SPF or DKIM, and most tests
# are not about the inbound checks: off unless a test (tests/inbound_auth) turns them on.
# In the environment, so that the services the tests start as processes inherit it.
os.environ.setdefault("MAILROUTE_INBOUND_AUTH", "off")

POSTGRES_URL_VARIABLE = "MAILROUTE_TEST_DATABASE_URL"
HOSTNAME = "mx.mailroute.example"
PUBLIC_URL = "https://mailroute.example"


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        message = (
            f"PostgreSQL tests need {POSTGRES_URL_VARIABLE}, "
            "e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "mailroute.db"
    migrate.upgrade(sqlite_url(path))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL database, emptied and migrated to head once per run: it belongs
    to the tests, and what an earlier run (of other code) left there must not matter."""
    url = postgres_url_or_skip()
    asyncio.run(_empty_schema(url))
    migrate.upgrade(url)
    return url


async def _empty_schema(url: str) -> None:
    engine = create_engine(url, pooled=False)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "mailroute.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return sqlite_url(path)
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    if engine.dialect.name == "postgresql":
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with engine.begin() as connection:
            # A connection an earlier test left checked out (a task cut off mid-transaction)
            # holds locks TRUNCATE would wait on forever: end those sessions first.
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            await connection.execute(text("SET LOCAL lock_timeout = '30s'"))
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session for service tests; the test decides when to commit."""
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def resolver() -> FakeResolver:
    resolver = FakeResolver()
    resolver.add_mailbox_domain("inbox.example")
    resolver.mx_records["nomail.example"] = [MxRecord(0, "")]  # RFC 7505 null MX
    return resolver


@pytest.fixture
def identity() -> MailIdentity:
    return MailIdentity(hostname=HOSTNAME, public_url=PUBLIC_URL)


@pytest.fixture
def api_context(
    sessionmaker: async_sessionmaker[AsyncSession], resolver: FakeResolver, identity: MailIdentity
) -> ApiContext:
    return ApiContext(sessionmaker=sessionmaker, resolver=resolver, identity=identity)


@pytest.fixture
async def anonymous(api_context: ApiContext) -> AsyncIterator[httpx.AsyncClient]:
    """An API client without a token."""
    transport = httpx.ASGITransport(app=create_app(api_context))
    async with httpx.AsyncClient(transport=transport, base_url="http://mailroute.test") as client:
        yield client


@pytest.fixture
async def api_token(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    async with session_scope(sessionmaker) as session:
        return (await tokens.create_token(session, "tests")).secret


@pytest.fixture
async def client(anonymous: httpx.AsyncClient, api_token: str) -> httpx.AsyncClient:
    """An API client with a valid token."""
    anonymous.headers["Authorization"] = f"Bearer {api_token}"
    return anonymous


@pytest.fixture
def dnsmasq_zone() -> Zone:
    """Override in a test module to serve other records."""
    return Zone()


@pytest.fixture
def dnsmasq(dnsmasq_zone: Zone) -> Iterator[Dnsmasq]:
    server = Dnsmasq(dnsmasq_zone)
    server.start()
    yield server
    server.stop()
