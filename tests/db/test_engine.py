"""SQLite is tuned for durability (WAL, fsync on commit) and integrity (foreign keys)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_engine_sqlite_pragmas(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        pragmas = {
            name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 30_000,
    }


async def test_engine_enforces_foreign_keys(engine: AsyncEngine) -> None:
    with pytest.raises(Exception, match="(?i)foreign key"):
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO rules (domain_id, kind, local_part, disposable, action, enabled,"
                    " message_count, created_at, updated_at) VALUES (999, 'alias', 'x', false,"
                    " 'drop', true, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
