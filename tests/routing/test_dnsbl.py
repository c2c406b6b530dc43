"""The pure half of DNS blocklists: the name asked (RFC 5782 2.1, 2.4) and which answers
list a client."""

from __future__ import annotations

import pytest

from app.config import DnsblZone
from app.routing.dnsbl import lists, query_name


def test_query_name_ipv4_reverses_the_octets() -> None:
    assert query_name("192.0.2.99", "zen.spamhaus.org") == "99.2.0.192.zen.spamhaus.org"


def test_query_name_ipv6_reverses_every_nibble() -> None:
    # RFC 5782 2.4: all 32 nibbles, zeros included, lowest first.
    assert query_name("2001:db8:1:2::3", "bl.test") == (
        "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test"
    )


def test_query_name_ipv4_mapped_is_asked_as_ipv4() -> None:
    assert query_name("::ffff:192.0.2.1", "bl.test") == "1.2.0.192.bl.test"


def test_lists_without_a_filter_takes_any_loopback_answer() -> None:
    assert lists("127.0.0.2", None)
    assert lists("127.0.0.10", None)


def test_lists_without_a_filter_ignores_answers_outside_loopback() -> None:
    # A resolver that rewrites NXDOMAIN to its own search page must not list everyone.
    assert not lists("192.0.2.1", None)


@pytest.mark.parametrize(
    ("pattern", "reply", "listed"),
    [
        ("127.0.0.2", "127.0.0.2", True),
        ("127.0.0.2", "127.0.0.3", False),
        ("127.0.0.[2..11]", "127.0.0.11", True),
        ("127.0.0.[2..11]", "127.255.255.254", False),  # Spamhaus: asked via a public resolver
        ("127.0.0.[2;4..5]", "127.0.0.3", False),
        ("127.0.0.[2;4..5]", "127.0.0.5", True),
        ("127.0.[0..255].[2..3]", "127.0.9.3", True),
    ],
)
def test_lists_with_a_filter_takes_only_matching_answers(
    pattern: str, reply: str, listed: bool
) -> None:
    reply_filter = DnsblZone.parse(f"bl.test={pattern}")[1]
    assert lists(reply, reply_filter) is listed


def test_lists_ignores_what_is_not_an_ipv4_address() -> None:
    assert not lists("::1", None)
