"""The activity log's record of refused recipients, bounded per client address, written
in the background.

A dictionary attack refuses a recipient per guess. Each is worth a row for the first few a
minute from one address; past ``per_minute`` the rest are only counted, and one summary
row says how many when that minute is over. A client cannot fill the database faster than
``per_minute`` + 1 rows a minute.

The rows are written in the background, refusals batched together (RefusalWriter): the
activity log is a record, not a promise, and the client need not wait for it (a
dictionary attack would otherwise cost a commit per guess).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from app.db.group_commit import GroupCommit
from app.db.transactions import Transactions
from app.ratelimit import Clock, Rate, RateLimiter
from app.services import activity

log = logging.getLogger(__name__)

WINDOW = 60.0  # seconds a summary covers


class RefusalLog:
    """Hands rows to ``write`` (which logs them in the background): each refusal while the
    client's budget lasts, then a summary per client and window."""

    def __init__(
        self,
        write: Callable[[dict[str, Any]], None],
        *,
        per_minute: int = 10,
        window: float = WINDOW,
        clock: Clock = time.monotonic,
        what: str = "recipients",
    ) -> None:
        self._write = write
        self._what = what  # what is refused, in the summary row's words
        self._window = window
        self._budget = RateLimiter(Rate(per_minute, burst=per_minute), clock=clock)
        self._suppressed: dict[str, tuple[int, str | None]] = {}  # ip -> (count, last sender)
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def refused(self, row: dict[str, Any]) -> None:
        """One refused recipient, as an activity row (activity.row)."""
        ip = row.get("client_ip") or "unknown"
        if self._budget.take(ip) is None:
            self._write(row)
            return
        count, _ = self._suppressed.get(ip, (0, None))
        self._suppressed[ip] = (count + 1, row.get("mail_from"))
        if ip not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[ip] = loop.call_later(self._window, self._summarize, ip)

    def flush(self) -> None:
        """Write every pending summary now (the server is stopping)."""
        for ip in list(self._timers):
            self._timers.pop(ip).cancel()
            self._summarize(ip)

    def _summarize(self, ip: str) -> None:
        self._timers.pop(ip, None)
        count, sender = self._suppressed.pop(ip, (0, None))
        if not count:
            return
        log.info("%d more refused %s from %s not logged one by one", count, self._what, ip)
        self._write(
            activity.row(
                activity.Envelope(None if ip == "unknown" else ip, sender),
                status=activity.REJECTED,
                address=None,
                reply=f"{count} more {self._what} refused from this client within a minute "
                "(not logged one by one)",
            )
        )


class RefusalWriter:
    """Writes what a RefusalLog hands it in the background, in group commits of their own."""

    def __init__(
        self, transactions: Transactions, *, per_minute: int, what: str = "recipients"
    ) -> None:
        self._commits = GroupCommit(transactions, _write_rows)
        self._writing: set[asyncio.Future[None]] = set()
        self._log = RefusalLog(self._write, per_minute=per_minute, what=what)

    def refused(self, row: dict[str, Any]) -> None:
        """One refusal (a recipient, a connection), as an activity row (activity.row)."""
        self._log.refused(row)

    async def drain(self) -> None:
        """Wait until the refusals logged so far are written (the server is stopping)."""
        self._log.flush()
        while self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

    def _write(self, row: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._commits.run(row))
        self._writing.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Future[None]) -> None:
        self._writing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("refusal not logged: %r", task.exception())


def _write_rows(session: Session, rows: list[dict[str, Any]]) -> list[None]:
    activity.record_many(session, rows)
    return [None] * len(rows)
