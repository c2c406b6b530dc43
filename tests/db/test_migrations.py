"""Every migration upgrades and downgrades cleanly, on SQLite and on PostgreSQL, and the
schema they build is exactly what the models describe."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from app.db import migrate
from app.db.engine import create_engine
from app.db.models import Base
from tests.conftest import postgres_url_or_skip, sqlite_url


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config(""))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


async def _admin(url: str, statement: str) -> None:
    admin = make_url(url).set(database="postgres")
    engine = create_engine(admin.render_as_string(hide_password=False))
    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables: a file on SQLite, a scratch database on PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "migrations.db")
        return
    base = make_url(postgres_url_or_skip())
    name = f"{base.database}_migrations"
    asyncio.run(_admin(str(base), f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(_admin(str(base), f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(str(base), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _schema_diff(url: str) -> list[object]:
    async def run() -> list[object]:
        engine = create_engine(url, pooled=False)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _tables(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_engine(url, pooled=False)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_migrations_build_exactly_the_models(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    assert _schema_diff(empty_database) == []


def test_migrations_step_up_and_down_cleanly(empty_database: str) -> None:
    revisions = _revisions()
    assert revisions, "no migrations found"
    for revision in revisions:
        migrate.upgrade(empty_database, revision)
    for revision in reversed(revisions[:-1]):
        migrate.downgrade(empty_database, revision)
    migrate.downgrade(empty_database, "base")
    assert _tables(empty_database) <= {"alembic_version"}
    migrate.upgrade(empty_database)
    assert _schema_diff(empty_database) == []


def test_migrations_head_is_single() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(""))
    assert len(script.get_heads()) == 1


def test_current_revision_reports_head_after_upgrade(empty_database: str) -> None:
    migrate.upgrade(empty_database)

    async def current() -> str | None:
        engine = create_engine(empty_database, pooled=False)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(current()) == migrate.head_revision()
