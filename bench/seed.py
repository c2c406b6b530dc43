"""Bulk-loading aliases straight into the schema `mailroute migrate` built, bypassing the ORM.

The rows are what ``app.services.aliases.create_alias`` would write (kind 'alias', action
'forward', enabled, message_count 0, one verified destination each), generated from their
index so that any alias can be named again later without keeping a million strings.
SQLite gets one executemany transaction; PostgreSQL gets COPY.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

FIRST = ("anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "ines", "jonas")
LAST = ("martin", "smith", "garcia", "muller", "rossi", "novak", "silva", "kowalski", "lee")
WORDS = ("shop", "news", "bank", "travel", "github", "school", "taxes", "forum", "games")
SEEDED_AT = datetime(2026, 1, 1, tzinfo=UTC)
# SQLAlchemy's SQLite DATETIME text form; app.db.types.UTCDateTime stores UTC without a zone.
SQLITE_TIMESTAMP = SEEDED_AT.strftime("%Y-%m-%d %H:%M:%S.%f")

RULE_COLUMNS = (
    "id",
    "domain_id",
    "kind",
    "local_part",
    "disposable",
    "action",
    "enabled",
    "expires_at",
    "max_messages",
    "message_count",
    "note",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class Corpus:
    """``aliases`` aliases spread round-robin over ``domains`` domains."""

    aliases: int
    domains: int
    destinations: int = 8

    def domain_name(self, d: int) -> str:
        return f"{WORDS[d % len(WORDS)]}{d:04d}.example.org"

    def local_part(self, i: int) -> str:
        # The index keeps every local part unique; the patterns give the index some variety.
        first, last, word = FIRST[i % 10], LAST[i % 9], WORDS[i % 9]
        return (f"user{i}", f"{first}.{last}{i}", f"{word}-{i}", f"{first}{i}")[i % 4]

    def address(self, i: int) -> str:
        return f"{self.local_part(i)}@{self.domain_name(i % self.domains)}"

    def destination_email(self, k: int) -> str:
        return f"inbox{k}@dest.example.net"

    def rules(self) -> Iterator[tuple[int, int, str]]:
        """(rule id, domain id, local part), domain by domain so each index fills in order."""
        rule_id = 0
        for d in range(self.domains):
            for i in range(d, self.aliases, self.domains):
                rule_id += 1
                yield rule_id, d + 1, self.local_part(i)


@dataclass(frozen=True, slots=True)
class SeedTiming:
    rows: int
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "rules": self.rows,
            "seconds": round(self.seconds, 2),
            "rules_per_second": round(self.rows / self.seconds) if self.seconds else 0,
        }


def _sqlite_rule_rows(corpus: Corpus) -> Iterator[tuple[object, ...]]:
    ts = SQLITE_TIMESTAMP
    for rule_id, domain_id, local in corpus.rules():
        yield rule_id, domain_id, "alias", local, 0, "forward", 1, None, None, 0, None, ts, ts


def seed_sqlite(database_url: str, corpus: Corpus) -> SeedTiming:
    """Load ``corpus`` into an empty, migrated SQLite database in one transaction."""
    path = make_url(database_url).database
    assert path, database_url
    start = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # Test data: no fsync while loading. synchronous is per connection, so closing this
        # one restores the server's own setting (FULL, set on each of its connections).
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")  # 256 MiB, for the unique index's pages
        db.execute("BEGIN")
        ts = SQLITE_TIMESTAMP
        db.executemany(
            "INSERT INTO domains (id, name, subaddressing, created_at, updated_at) "
            "VALUES (?, ?, 1, ?, ?)",
            ((d + 1, corpus.domain_name(d), ts, ts) for d in range(corpus.domains)),
        )
        db.executemany(
            "INSERT INTO destinations (id, email, status, verified_at, created_at) "
            "VALUES (?, ?, 'verified', ?, ?)",
            ((k + 1, corpus.destination_email(k), ts, ts) for k in range(corpus.destinations)),
        )
        placeholders = ", ".join("?" * len(RULE_COLUMNS))
        db.executemany(
            f"INSERT INTO rules ({', '.join(RULE_COLUMNS)}) VALUES ({placeholders})",
            _sqlite_rule_rows(corpus),
        )
        db.executemany(
            "INSERT INTO rule_destinations (rule_id, destination_id) VALUES (?, ?)",
            ((rid, rid % corpus.destinations + 1) for rid in range(1, corpus.aliases + 1)),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return SeedTiming(corpus.aliases, time.perf_counter() - start)


def asyncpg_dsn(database_url: str) -> str:
    """The libpq form of a ``postgresql+asyncpg://`` URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


async def seed_postgresql(database_url: str, corpus: Corpus) -> SeedTiming:
    """Load ``corpus`` into an empty, migrated PostgreSQL database with COPY, then ANALYZE
    (what autovacuum would soon do after such a load) so the planner knows the tables."""
    start = time.perf_counter()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with conn.transaction():
            # No foreign-key triggers for rows that reference each other by construction
            # (superuser only; the in-process bench then checks every sampled alias routes).
            await conn.execute("SET LOCAL session_replication_role = replica")
            await _copy_postgresql(conn, corpus)
            # Explicit ids bypassed the sequences; later inserts (the API) must not collide.
            for table in ("domains", "destinations", "rules"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        await conn.execute("ANALYZE domains, destinations, rules, rule_destinations")
    finally:
        await conn.close()
    return SeedTiming(corpus.aliases, time.perf_counter() - start)


async def _copy_postgresql(conn: asyncpg.Connection, corpus: Corpus) -> None:
    ts = SEEDED_AT
    await conn.copy_records_to_table(
        "domains",
        columns=["id", "name", "subaddressing", "created_at", "updated_at"],
        records=[(d + 1, corpus.domain_name(d), True, ts, ts) for d in range(corpus.domains)],
    )
    await conn.copy_records_to_table(
        "destinations",
        columns=["id", "email", "status", "verified_at", "created_at"],
        records=[
            (k + 1, corpus.destination_email(k), "verified", ts, ts)
            for k in range(corpus.destinations)
        ],
    )
    await conn.copy_records_to_table(
        "rules",
        columns=list(RULE_COLUMNS),
        records=(
            (rid, did, "alias", local, False, "forward", True, None, None, 0, None, ts, ts)
            for rid, did, local in corpus.rules()
        ),
    )
    await conn.copy_records_to_table(
        "rule_destinations",
        columns=["rule_id", "destination_id"],
        records=((rid, rid % corpus.destinations + 1) for rid in range(1, corpus.aliases + 1)),
    )
