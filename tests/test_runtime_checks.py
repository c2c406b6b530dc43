"""The inbound checks the SMTP role builds from the settings (app.runtime.smtp)."""

from __future__ import annotations

import dns.resolver
import pytest

from app.config import load_settings
from app.inbound_auth.policy import Mode
from app.runtime.smtp import DNS_CACHE_ENTRIES, inbound_checks

RSPAMD = "http://127.0.0.1:11333"


@pytest.mark.parametrize(
    ("overrides", "mode", "spam_filter"),
    [
        ({"inbound_auth": "off", "rspamd_url": RSPAMD}, Mode.OFF, True),
        ({"inbound_auth": "enforce"}, Mode.ENFORCE, False),
        ({"inbound_auth": "record", "rspamd_url": RSPAMD}, Mode.RECORD, True),
    ],
)
async def test_inbound_checks_follow_the_settings(
    overrides: dict[str, str], mode: Mode, spam_filter: bool
) -> None:
    settings = load_settings(hostname="mx.example.org", dns_nameservers="127.0.0.1:53", **overrides)
    checks = inbound_checks(settings)
    assert checks is not None
    try:
        assert (checks.mode, checks.authserv_id) == (mode, "mx.example.org")
        assert (checks.spam_filter is not None) is spam_filter
        # The answers of both resolvers go to one cache, of bounded size.
        cache = checks.lookups.resolver.cache
        assert isinstance(cache, dns.resolver.LRUCache)
        assert cache.max_size == DNS_CACHE_ENTRIES
    finally:
        await checks.aclose()


def test_inbound_checks_none_when_nothing_is_checked() -> None:
    settings = load_settings(hostname="mx.example.org", inbound_auth="off")
    assert inbound_checks(settings) is None
