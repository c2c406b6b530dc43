"""Connections kept open between delivery batches, as Postfix's scache(8) keeps them.

A steady trickle of mail (one sending session, say) makes batches of one message each;
opening a connection for each (TCP, greeting, EHLO, perhaps STARTTLS, QUIT) costs more
than sending the message. So a connection that ends a batch in good order is parked for
a couple of seconds (Postfix's smtp_connection_cache_time_limit), and the next batch to
the same host takes it, after an RSET proves it still answers, as Postfix does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import aiosmtplib

from app.delivery.mx import Target
from app.delivery.relay import Connection

log = logging.getLogger(__name__)

IDLE_LIMIT = 2.0  # seconds a parked connection waits for the next batch
REUSE_LIMIT = 300.0  # seconds one connection may serve in all (smtp_connection_reuse_time_limit)


class ConnectionCache:
    def __init__(self, idle_limit: float = IDLE_LIMIT, reuse_limit: float = REUSE_LIMIT) -> None:
        self.idle_limit = idle_limit
        self.reuse_limit = reuse_limit
        self._idle: dict[Target, list[tuple[Connection, float]]] = defaultdict(list)
        self._opened: dict[int, float] = {}  # id(connection) -> when it was opened
        self._closing: set[asyncio.Future[None]] = set()

    def opened(self, connection: Connection) -> None:
        self._opened[id(connection)] = asyncio.get_running_loop().time()

    async def take(self, target: Target) -> Connection | None:
        """A parked connection to ``target`` that answered RSET, or None."""
        now = asyncio.get_running_loop().time()
        parked = self._idle.get(target)
        while parked:
            connection, since = parked.pop()
            if now - since > self.idle_limit or not connection.alive:
                self._close(connection)
                continue
            try:
                await connection.client.rset()
            except (aiosmtplib.SMTPException, OSError) as exc:
                log.debug("parked connection to %s is gone: %r", connection.remote, exc)
                self._close(connection)
                continue
            return connection
        return None

    def give(self, connection: Connection) -> None:
        """Park ``connection`` (it ended a batch in good order), or close it when it has
        served long enough, or when nothing is kept (an idle limit of 0)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        served = now - self._opened.get(id(connection), now)
        if self.idle_limit <= 0 or not connection.alive or served > self.reuse_limit:
            self._close(connection)
            return
        self._idle[connection.target].append((connection, now))
        loop.call_later(self.idle_limit + 0.1, self._expire, connection.target)

    def _expire(self, target: Target) -> None:
        now = asyncio.get_running_loop().time()
        parked = self._idle.get(target, [])
        keep = [(c, since) for c, since in parked if now - since <= self.idle_limit]
        for connection, since in parked:
            if now - since > self.idle_limit:
                self._close(connection)
        if keep:
            self._idle[target] = keep
        else:
            self._idle.pop(target, None)

    def _close(self, connection: Connection) -> None:
        self._opened.pop(id(connection), None)
        closing = asyncio.ensure_future(connection.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        for parked in self._idle.values():
            for connection, _since in parked:
                self._close(connection)
        self._idle.clear()
        if self._closing:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._closing, return_exceptions=True)
