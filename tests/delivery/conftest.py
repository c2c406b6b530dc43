"""Sinks for delivery tests: real SMTP servers on loopback, with knobs to fail on demand."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.db.types import utcnow
from tests.delivery.sink import Sink, self_signed_context


class Clock:
    """A clock the test moves by hand; starts at the real now (the outbox stamps new mail
    with the real time, so the test clock must not run behind it)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture(scope="session")
def sink_tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    return self_signed_context(tmp_path_factory.mktemp("sink-tls"))


@pytest.fixture
def make_sink() -> Iterator[Callable[..., Sink]]:
    """Start sinks with any options (``make_sink(tls_context=..., smtputf8=False)``);
    every one is stopped when the test ends."""
    sinks: list[Sink] = []

    def make(**options: Any) -> Sink:
        sink = Sink(**options)
        sinks.append(sink)
        return sink.start()

    yield make
    for sink in sinks:
        sink.stop()


@pytest.fixture
def sink(make_sink: Callable[..., Sink]) -> Sink:
    """A plain sink on 127.0.0.1 that accepts everything and offers no STARTTLS."""
    return make_sink()


@pytest.fixture
def tls_sink(make_sink: Callable[..., Sink], sink_tls_context: ssl.SSLContext) -> Sink:
    """A sink that offers STARTTLS with a self-signed certificate."""
    return make_sink(tls_context=sink_tls_context)


@pytest.fixture
def clock() -> Clock:
    return Clock()
