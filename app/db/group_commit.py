"""Group commit: the items of concurrent callers are written in one transaction.

Every accepted message is committed (fsync'd) before its 250. With one transaction per
message, the commit, not the work, is the cost of a busy server (bench/forwarding.py
measures it); so while one commit runs, the messages that arrive wait for the next, and
go in together: one batch of statements and one fsync for all of them. Nobody is
answered before the commit that holds their item has succeeded. A failing item does not
sink its neighbours: when a batch fails, each of its items is tried again alone, and
only the failing ones fail. Each batch runs where app.db.transactions says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from app.db.transactions import Transactions

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
# Writes the items in the caller's transaction; one result per item, in order.
Write = Callable[[Session, list[Item]], list[Result]]


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        transactions: Transactions,
        write: Write[Item, Result],
        *,
        max_batch: int = 100,
    ) -> None:
        self.transactions = transactions
        self.write = write
        self.max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._committer: asyncio.Future[None] | None = None

    async def run(self, item: Item) -> Result:
        """Write ``item`` in a transaction shared with whoever else is waiting; its result
        once that transaction is committed, or the exception that kept it from being."""
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_pending())
        # Shielded: a caller that goes away (a client hanging up) must not cancel the
        # commit its neighbours wait for; its own item is committed all the same.
        return await asyncio.shield(done)

    async def _commit_pending(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                await self._commit(batch)
        finally:
            self._committer = None

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
        except asyncio.CancelledError:  # the server is going down: nobody waits forever
            for _, done in batch:
                _fail(done, ConnectionAbortedError("shutting down"))
            raise
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.info("a group commit of %d failed (%r); one by one", len(batch), exc)
            for item, done in batch:
                try:
                    (result,) = await self._write([item])
                except Exception as alone:
                    _fail(done, alone)
                else:
                    done.set_result(result)
            return
        for (_, done), result in zip(batch, results, strict=True):
            done.set_result(result)

    async def _write(self, items: list[Item]) -> list[Result]:
        return await self.transactions.run(lambda session: self.write(session, items))


def _fail(done: asyncio.Future[Result], exc: BaseException) -> None:
    done.set_exception(exc)
    # Whoever awaits it still gets the exception; a caller that went away left nobody
    # to retrieve it, and asyncio would log it as never retrieved.
    done.exception()
