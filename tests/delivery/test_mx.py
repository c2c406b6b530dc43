"""MX resolution with a fake resolver: order, shuffling, implicit and null MX, DNS errors."""

from __future__ import annotations

import ipaddress

import pytest

from app.delivery.mx import NoRoute, Target, resolve_targets
from app.delivery.outcome import Result
from app.resolver import MxRecord
from app.routing.networks import DeliveryNetworks
from tests.fakes import FakeResolver

PORT = 2525
# The fake resolver answers with documentation addresses (RFC 5737, RFC 3849), internal
# by default.
TEST_NETS = DeliveryNetworks(
    allowed=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
)


def keep_order(hosts: list[str]) -> None:
    """A shuffle that leaves equal-preference hosts as the resolver listed them."""


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver(
        address_records={
            "mx1.dest.example": ["192.0.2.1"],
            "mx2.dest.example": ["192.0.2.2"],
            "mx3.dest.example": ["192.0.2.3"],
        }
    )


async def test_resolve_targets_follow_preference_order(resolver: FakeResolver) -> None:
    resolver.mx_records["dest.example"] = [
        MxRecord(30, "mx3.dest.example"),
        MxRecord(10, "mx1.dest.example"),
        MxRecord(20, "mx2.dest.example"),
    ]
    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=keep_order, networks=TEST_NETS
    )
    assert targets == [
        Target("mx1.dest.example", "192.0.2.1", PORT),
        Target("mx2.dest.example", "192.0.2.2", PORT),
        Target("mx3.dest.example", "192.0.2.3", PORT),
    ]


async def test_resolve_targets_shuffle_hosts_of_equal_preference(resolver: FakeResolver) -> None:
    resolver.mx_records["dest.example"] = [
        MxRecord(10, "mx1.dest.example"),
        MxRecord(10, "mx2.dest.example"),
        MxRecord(20, "mx3.dest.example"),
    ]
    shuffled: list[list[str]] = []

    def reverse(hosts: list[str]) -> None:
        shuffled.append(list(hosts))
        hosts.reverse()

    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=reverse, networks=TEST_NETS
    )
    assert [t.host for t in targets] == ["mx2.dest.example", "mx1.dest.example", "mx3.dest.example"]
    assert ["mx1.dest.example", "mx2.dest.example"] in shuffled


async def test_resolve_targets_never_shuffle_across_preferences(resolver: FakeResolver) -> None:
    resolver.mx_records["dest.example"] = [
        MxRecord(20, "mx2.dest.example"),
        MxRecord(10, "mx1.dest.example"),
    ]

    def reverse(hosts: list[str]) -> None:
        hosts.reverse()

    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=reverse, networks=TEST_NETS
    )
    assert [t.host for t in targets] == ["mx1.dest.example", "mx2.dest.example"]


async def test_resolve_targets_every_address_of_a_host(resolver: FakeResolver) -> None:
    resolver.mx_records["dest.example"] = [MxRecord(10, "mx1.dest.example")]
    resolver.address_records["mx1.dest.example"] = ["192.0.2.1", "2001:db8::1"]
    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=keep_order, networks=TEST_NETS
    )
    assert targets == [
        Target("mx1.dest.example", "192.0.2.1", PORT),
        Target("mx1.dest.example", "2001:db8::1", PORT),
    ]


async def test_resolve_targets_implicit_mx_is_the_domain_itself() -> None:
    # RFC 5321 5.1: no MX records, but an address: the domain is its own mail host.
    resolver = FakeResolver(address_records={"plain.example": ["192.0.2.9"]})
    targets = await resolve_targets(
        resolver, "plain.example", PORT, shuffle=keep_order, networks=TEST_NETS
    )
    assert targets == [Target("plain.example", "192.0.2.9", PORT)]


async def test_resolve_targets_null_mx_is_a_permanent_no_route() -> None:
    resolver = FakeResolver(mx_records={"nomail.example": [MxRecord(0, "")]})
    with pytest.raises(NoRoute) as caught:
        await resolve_targets(
            resolver, "nomail.example", PORT, shuffle=keep_order, networks=TEST_NETS
        )
    assert caught.value.outcome.result is Result.PERMANENT
    assert caught.value.outcome.status == "5.1.10"  # RFC 7505 4.2
    assert resolver.queries == [("MX", "nomail.example")]  # no A look-up of the root


async def test_resolve_targets_nxdomain_is_a_permanent_no_route() -> None:
    with pytest.raises(NoRoute) as caught:
        await resolve_targets(
            FakeResolver(), "nowhere.example", PORT, shuffle=keep_order, networks=TEST_NETS
        )
    assert caught.value.outcome.result is Result.PERMANENT
    assert caught.value.outcome.status == "5.1.2"


async def test_resolve_targets_dns_failure_is_a_temporary_no_route() -> None:
    resolver = FakeResolver(failing={"dest.example"})
    with pytest.raises(NoRoute) as caught:
        await resolve_targets(
            resolver, "dest.example", PORT, shuffle=keep_order, networks=TEST_NETS
        )
    assert caught.value.outcome.result is Result.TEMPORARY
    assert caught.value.outcome.status == "4.4.3"


async def test_resolve_targets_skip_mx_host_without_address(resolver: FakeResolver) -> None:
    resolver.mx_records["dest.example"] = [
        MxRecord(10, "gone.dest.example"),  # NXDOMAIN
        MxRecord(20, "mx2.dest.example"),
    ]
    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=keep_order, networks=TEST_NETS
    )
    assert targets == [Target("mx2.dest.example", "192.0.2.2", PORT)]


async def test_resolve_targets_skip_mx_host_whose_lookup_fails(resolver: FakeResolver) -> None:
    resolver.mx_records["dest.example"] = [
        MxRecord(10, "mx1.dest.example"),
        MxRecord(20, "mx2.dest.example"),
    ]
    resolver.failing.add("mx1.dest.example")
    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=keep_order, networks=TEST_NETS
    )
    assert targets == [Target("mx2.dest.example", "192.0.2.2", PORT)]


async def test_resolve_targets_no_mx_host_with_address_is_temporary() -> None:
    resolver = FakeResolver(
        mx_records={"dest.example": [MxRecord(10, "gone.dest.example")]},
    )
    with pytest.raises(NoRoute) as caught:
        await resolve_targets(
            resolver, "dest.example", PORT, shuffle=keep_order, networks=TEST_NETS
        )
    assert caught.value.outcome.result is Result.TEMPORARY


async def test_resolve_targets_skip_an_mx_host_with_only_internal_addresses(
    resolver: FakeResolver,
) -> None:
    resolver.mx_records["dest.example"] = [
        MxRecord(10, "lan.dest.example"),
        MxRecord(20, "mx2.dest.example"),
    ]
    resolver.address_records["lan.dest.example"] = ["10.0.0.25", "::ffff:127.0.0.1"]
    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=keep_order, networks=TEST_NETS
    )
    assert targets == [Target("mx2.dest.example", "192.0.2.2", PORT)]


async def test_resolve_targets_only_internal_hosts_is_a_permanent_5_4_4() -> None:
    resolver = FakeResolver(
        mx_records={"dest.example": [MxRecord(10, "localhost"), MxRecord(20, "lan.example")]},
        address_records={"localhost": ["127.0.0.1", "::1"], "lan.example": ["100.64.1.1"]},
    )
    with pytest.raises(NoRoute) as caught:
        await resolve_targets(
            resolver, "dest.example", PORT, shuffle=keep_order, networks=DeliveryNetworks()
        )
    assert caught.value.outcome.result is Result.PERMANENT
    assert caught.value.outcome.status == "5.4.4"
    assert caught.value.outcome.reply.startswith("554 5.4.4 ")


async def test_resolve_targets_internal_and_unresolved_hosts_is_temporary() -> None:
    # The unresolved host may resolve somewhere permitted later.
    resolver = FakeResolver(
        mx_records={"dest.example": [MxRecord(10, "localhost"), MxRecord(20, "gone.example")]},
        address_records={"localhost": ["127.0.0.1"]},
    )
    with pytest.raises(NoRoute) as caught:
        await resolve_targets(
            resolver, "dest.example", PORT, shuffle=keep_order, networks=DeliveryNetworks()
        )
    assert caught.value.outcome.result is Result.TEMPORARY


async def test_resolve_targets_allowed_network_opens_an_internal_host() -> None:
    resolver = FakeResolver(address_records={"dest.example": ["127.0.0.2"]})
    networks = DeliveryNetworks(allowed=(ipaddress.ip_network("127.0.0.0/8"),))
    targets = await resolve_targets(
        resolver, "dest.example", PORT, shuffle=keep_order, networks=networks
    )
    assert targets == [Target("dest.example", "127.0.0.2", PORT)]


async def test_resolve_targets_never_our_own_listener_even_when_allowed() -> None:
    resolver = FakeResolver(address_records={"dest.example": ["127.0.0.1"]})
    networks = DeliveryNetworks.for_listener(
        [ipaddress.ip_network("127.0.0.0/8")], "127.0.0.1", PORT
    )
    with pytest.raises(NoRoute) as caught:
        await resolve_targets(resolver, "dest.example", PORT, shuffle=keep_order, networks=networks)
    assert caught.value.outcome.status == "5.4.4"
