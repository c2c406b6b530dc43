"""A real rspamd, started once for the session by the first test that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.rspamd import RspamdDaemon


@pytest.fixture(scope="session")
def rspamd_url(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[str]:
    # pytest's cache keeps rspamd's compiled rules between runs (see tests/peers/rspamd.py).
    cache = pytestconfig.cache
    cache_dir = cache.mkdir("rspamd-hyperscan") if cache is not None else None
    daemon = RspamdDaemon(tmp_path_factory.mktemp("rspamd"), cache_dir)
    daemon.start()
    try:
        yield daemon.url
    finally:
        daemon.stop()
