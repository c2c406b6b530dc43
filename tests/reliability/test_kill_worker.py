"""kill -9 of a delivery worker mid-delivery, with a second worker on the same PostgreSQL
queue: the second leaves the first one's claims alone while their lease runs, then
delivers every one of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from app.services.queue import DELIVERING
from tests.delivery.sink import Sink
from tests.reliability.conftest import InstallationFactory
from tests.reliability.load import Load, load_ids
from tests.reliability.service import ALIAS, claims, prepare_database

pytestmark = pytest.mark.postgres

MESSAGES = 20
LEASE_SECONDS = 8.0
POLL_SECONDS = 5.0  # WorkerConfig.poll_interval: an idle worker looks this often
STALL_SECONDS = 60.0  # the sink's wait before answering worker A's first DATA


def queue_empties(url: str, timeout: float) -> bool:
    """Whether every delivery is settled (delivered messages leave the queue) in time."""
    deadline = time.monotonic() + timeout
    while claims(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_worker_kill9_mid_delivery_other_worker_delivers_after_lease(
    postgres_url: str,
    installation: InstallationFactory,
    sink: Sink,
    report: Callable[[str], None],
) -> None:
    prepare_database(postgres_url)
    service = installation(
        postgres_url, delivery_lease=str(LEASE_SECONDS), inline_delivery_timeout="0"
    )
    smtp = service.process("smtp", "smtp").start()
    service.wait_ready(smtp, api=False)
    load = Load("127.0.0.1", service.smtp_port, ALIAS, MESSAGES, clients=2).start(30)
    load.join()
    assert len(load.accepted) == MESSAGES, dict(load.failures)

    # Worker A claims the whole queue (one batch) and hangs in its first DATA.
    sink.stall_at("data", STALL_SECONDS)
    worker_a = service.process("worker-a", "worker").start()
    sink.wait_stalling(timeout=30)
    held = claims(postgres_url)
    assert [c.status for c in held] == [DELIVERING] * MESSAGES
    assert len({c.claimed_by for c in held}) == 1
    lease_ends = min(c.claimed_until for c in held if c.claimed_until is not None)
    worker_b = service.process("worker-b", "worker").start()
    worker_b.wait_for_log("delivery worker")
    worker_a.kill9()
    killed = time.monotonic()

    # Until A's lease runs out, B must not send what A holds (that would be a duplicate).
    time.sleep(max(0.0, (lease_ends - datetime.now(UTC)).total_seconds() - 0.5))
    assert sink.received == [], "worker B sent deliveries while A's claim was live"
    delivered = load_ids(sink.wait_for(MESSAGES, timeout=LEASE_SECONDS + POLL_SECONDS + 15))
    took_over = time.monotonic() - killed

    assert set(delivered) == set(range(MESSAGES))
    assert queue_empties(postgres_url, timeout=10), claims(postgres_url)
    worker_b.check_alive()
    duplicates = sum(delivered.values()) - len(delivered)
    report(
        f"{MESSAGES} claimed by the killed worker, all delivered by the other "
        f"{took_over:.1f} s after the kill (lease {LEASE_SECONDS:.0f} s); "
        f"{duplicates} duplicates"
    )
