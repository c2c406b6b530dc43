"""`mailroute serve` under load, nothing killed, in-session delivery on (the default):
every accepted message reaches the destination exactly once. Duplicates here are not the
price of a crash but a race, e.g. the queue step and the in-session attempt both
sending a message."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.delivery.sink import Sink
from tests.reliability.conftest import InstallationFactory
from tests.reliability.load import Load, load_ids
from tests.reliability.service import ALIAS, count_messages, prepare_database

MESSAGES = 400
CLIENTS = 8
LOAD_SECONDS = 60.0


def test_serve_under_load_delivers_each_message_once(
    database_url: str,
    installation: InstallationFactory,
    sink: Sink,
    report: Callable[[str], None],
) -> None:
    prepare_database(database_url)
    service = installation(database_url)
    service.serve()
    started = time.monotonic()
    load = Load("127.0.0.1", service.smtp_port, ALIAS, MESSAGES, clients=CLIENTS)
    load.start(LOAD_SECONDS).join()
    sink.wait_for(MESSAGES, timeout=30)
    # Whatever is still queued after the last 250 gets a moment to go out (twice?).
    deadline = time.monotonic() + 15
    while count_messages(database_url) and time.monotonic() < deadline:
        time.sleep(0.2)

    delivered = load_ids(list(sink.received))
    duplicates = {n: c for n, c in delivered.items() if c > 1}
    report(
        f"{len(load.accepted)}/{MESSAGES} accepted, {sum(delivered.values())} delivered, "
        f"{len(duplicates)} duplicated, in {time.monotonic() - started:.1f} s"
    )
    assert load.accepted == set(range(MESSAGES)), dict(load.failures)
    assert set(delivered) == load.accepted
    assert duplicates == {}
