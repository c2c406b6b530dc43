"""What a database failure means, whatever the database: the edges ask here whether the
database is out of reach for now (OUTAGE_ERRORS) or out of room (is_disk_full), and
answer accordingly (SMTP 451 or 452), never by a driver's own codes.

Codes, not message text: PostgreSQL words its messages in the server's lc_messages
language.
"""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# The database cannot be reached or cannot do the work now (a restart, a lock held too
# long, a full disk): worth trying again later.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError, OSError)
# Whatever the database or its driver raised, an outage or not (a constraint, a bug):
# a write that failed with one of these did not happen.
STORAGE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, OSError)

POSTGRESQL_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full (its Appendix A)


def is_disk_full(exc: BaseException) -> bool:
    """Whether a write failed for want of space: ENOSPC, SQLite's SQLITE_FULL, or
    PostgreSQL's SQLSTATE 53100 (disk_full)."""
    orig = getattr(exc, "orig", None) or exc
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    return (
        (isinstance(orig, OSError) and orig.errno == errno.ENOSPC)
        or (isinstance(sqlite_code, int) and sqlite_code & 0xFF == sqlite3.SQLITE_FULL)
        or getattr(orig, "sqlstate", None) == POSTGRESQL_DISK_FULL
    )
