"""Lookups: the configured servers, our own threads, DNS failures as DnsTemporaryFailure."""

from __future__ import annotations

import threading

import pytest

from app.errors import DnsTemporaryFailure
from app.inbound_auth.lookups import Lookups
from tests.inbound_auth.conftest import DKIM_DOMAIN, Key

pytestmark = pytest.mark.dnsmasq


async def test_lookups_txt_joins_a_long_record(lookups: Lookups, rsa_key: Key) -> None:
    """A 2048-bit key record (over 255 octets) comes as several strings, joined again."""
    [record] = await lookups.run(lookups.txt, f"rsa._domainkey.{DKIM_DOMAIN}")
    assert len(rsa_key.record) > 255
    assert record == rsa_key.record.encode()


@pytest.mark.parametrize("name", ["nowhere.auth.test", "a..b.auth.test", "x" * 64 + ".test"])
async def test_lookups_records_nothing_there_is_empty(lookups: Lookups, name: str) -> None:
    assert await lookups.run(lookups.records, name, "TXT") == []


async def test_lookups_refused_is_temporary(lookups: Lookups) -> None:
    """dnsmasq (no upstream) refuses names outside its zones: no server could answer."""
    with pytest.raises(DnsTemporaryFailure):
        await lookups.run(lookups.records, "example.org", "TXT")


async def test_lookups_timeout_is_temporary(silent_lookups: Lookups) -> None:
    with pytest.raises(DnsTemporaryFailure):
        await silent_lookups.run(silent_lookups.txt, "pass.auth.test")


async def test_lookups_run_uses_its_own_threads(lookups: Lookups) -> None:
    name = await lookups.run(lambda: threading.current_thread().name)
    assert name.startswith("inbound-auth")
