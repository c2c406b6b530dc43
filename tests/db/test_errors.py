"""Classifying database failures (app.db.errors): a full disk is told by its code on each
database, whatever the wording; other failures are not taken for one."""

from __future__ import annotations

import errno
import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app.db.errors import OUTAGE_ERRORS, STORAGE_ERRORS, is_disk_full


class PostgresError(Exception):
    """What asyncpg raises, as far as the classification reads it."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__("message in the server's language")
        self.sqlstate = sqlstate


def sqlite_error(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = code
    return error


def wrapped(orig: Exception) -> OperationalError:
    return OperationalError("INSERT", None, orig)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        wrapped(sqlite_error(sqlite3.SQLITE_FULL)),
        wrapped(PostgresError("53100")),
    ],
)
def test_is_disk_full_by_code(error: Exception) -> None:
    assert is_disk_full(error)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.EIO, "Input/output error"),
        wrapped(sqlite_error(sqlite3.SQLITE_BUSY)),
        wrapped(PostgresError("57P01")),  # admin_shutdown
        wrapped(PostgresError("53200")),  # out_of_memory: room, but not on the disk
    ],
)
def test_is_disk_full_not_for_other_failures(error: Exception) -> None:
    assert not is_disk_full(error)


def test_outage_errors_leave_out_what_a_retry_will_not_mend() -> None:
    integrity = IntegrityError("INSERT", None, Exception("duplicate key"))
    assert not isinstance(integrity, OUTAGE_ERRORS)
    assert isinstance(integrity, STORAGE_ERRORS)
    assert isinstance(wrapped(sqlite_error(sqlite3.SQLITE_BUSY)), OUTAGE_ERRORS)
