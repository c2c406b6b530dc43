"""kill -9 of `mailroute serve` under load: every message answered 250 is delivered.

Eight clients send 2,000 messages; when 40 % are accepted the server is killed with
SIGKILL and started again on the same database. Clients retry what was not answered 250.
Delivery is at least once: a message sent to the sink whose outcome was not yet committed
goes out again after the restart, and a client that lost its session after our commit but
before the 250 sends again. Both show as duplicates, counted in the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.delivery.sink import Sink
from tests.reliability.conftest import InstallationFactory
from tests.reliability.load import Load, load_ids
from tests.reliability.service import ALIAS, prepare_database

MESSAGES = 2000
CLIENTS = 8
KILL_AT = 0.4
LOAD_SECONDS = 70.0  # clients give up then; 25-40 s suffice on a busy 2-CPU machine
DRAIN_SECONDS = 20.0
# A PostgreSQL claim left by the killed process lapses after this; SQLite's lone worker
# takes its claims back at start.
LEASE_SECONDS = "5"


def wait_delivered(sink: Sink, wanted: set[int], timeout: float) -> set[int]:
    """The ids of ``wanted`` still missing from the sink after up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - set(load_ids(list(sink.received)))
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


def test_serve_kill9_under_load_loses_no_accepted_message(
    database_url: str,
    installation: InstallationFactory,
    sink: Sink,
    report: Callable[[str], None],
) -> None:
    prepare_database(database_url)
    service = installation(database_url, delivery_lease=LEASE_SECONDS, inline_delivery_timeout="0")
    server = service.serve()
    started = time.monotonic()
    load = Load("127.0.0.1", service.smtp_port, ALIAS, MESSAGES, clients=CLIENTS)
    load.start(LOAD_SECONDS)

    load.wait_accepted(int(MESSAGES * KILL_AT), timeout=LOAD_SECONDS)
    server.kill9()
    accepted_before_kill = set(load.accepted)
    killed = time.monotonic()
    server.start()
    service.wait_ready(server)
    restarted = time.monotonic()
    load.join()
    accepted = set(load.accepted)
    missing = wait_delivered(sink, accepted, DRAIN_SECONDS)
    drained = time.monotonic()

    delivered = load_ids(list(sink.received))
    duplicates = {n: c for n, c in delivered.items() if c > 1}
    report(
        f"{len(accepted)}/{MESSAGES} accepted in {load.attempts} transactions "
        f"({len(accepted_before_kill)} before the kill), {sum(delivered.values())} delivered, "
        f"{len(duplicates)} duplicated ({sum(duplicates.values()) - len(duplicates)} extra "
        f"copies), lost {len(missing)}; down {restarted - killed:.1f} s, "
        f"total {drained - started:.1f} s; client failures {dict(load.failures)}"
    )
    assert not missing, f"accepted (250) but never delivered: {sorted(missing)[:20]}"
    assert accepted_before_kill <= accepted
    assert len(accepted) == MESSAGES, f"clients gave up: {dict(load.failures)}"
    assert set(delivered) <= set(range(MESSAGES))
