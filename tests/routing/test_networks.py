"""app.routing.networks: which addresses delivery may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from app.routing.networks import DeliveryNetworks, is_internal

LOOPBACK_ALLOWED = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "::1",
        "0.0.0.0",  # unspecified
        "::",
        "10.1.2.3",  # RFC 1918
        "172.16.0.1",
        "192.168.1.1",
        "fd12:3456::1",  # RFC 4193 ULA
        "100.64.0.1",  # shared address space (CGNAT), RFC 6598
        "169.254.1.1",  # link-local
        "fe80::1",
        "224.0.0.1",  # multicast
        "ff02::1",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.1",  # documentation
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    ],
)
def test_is_internal_refuses_special_purpose_addresses(address: str) -> None:
    assert is_internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2a00:1450:4001::1b"])
def test_is_internal_accepts_global_unicast(address: str) -> None:
    assert not is_internal(ipaddress.ip_address(address))


def test_delivery_networks_default_refuses_loopback_with_a_reason() -> None:
    refusal = DeliveryNetworks().refusal("127.0.0.1", 25)
    assert refusal == (
        "127.0.0.1 is an internal address (not in MAILROUTE_DELIVERY_ALLOWED_NETWORKS)"
    )


def test_delivery_networks_allowed_network_opens_it_and_its_mapped_form() -> None:
    networks = DeliveryNetworks(allowed=LOOPBACK_ALLOWED)
    assert networks.permits("127.0.0.2", 25)
    assert networks.permits("::ffff:127.0.0.2", 25)
    assert not networks.permits("10.0.0.1", 25)


def test_delivery_networks_never_our_own_listener() -> None:
    networks = DeliveryNetworks.for_listener(LOOPBACK_ALLOWED, "127.0.0.1", 2525)
    assert (
        networks.refusal("127.0.0.1", 2525) == "127.0.0.1:2525 is this server's own SMTP listener"
    )
    assert not networks.permits("::ffff:127.0.0.1", 2525)
    assert networks.permits("127.0.0.1", 25)  # another service on the same address


def test_delivery_networks_listener_on_every_address_is_reached_through_loopback() -> None:
    networks = DeliveryNetworks.for_listener(LOOPBACK_ALLOWED, "0.0.0.0", 25)
    assert not networks.permits("127.0.0.1", 25)
    assert networks.permits("127.0.0.2", 2525)


def test_delivery_networks_refuses_what_is_not_an_address() -> None:
    assert DeliveryNetworks().refusal("mx.example", 25) == "mx.example is not an IP address"


def test_networks_for_destinations_with_a_smarthost_refuse_nothing() -> None:
    # Mail goes to the smarthost, never to a destination's own mail hosts.
    networks = DeliveryNetworks.for_destinations((), "127.0.0.1", 2525, smarthost=True)
    assert networks.network_refusal("127.0.0.1") is None
    assert networks.network_refusal("10.1.2.3") is None


def test_networks_for_destinations_without_a_smarthost_are_the_mx_policy() -> None:
    networks = DeliveryNetworks.for_destinations((), "127.0.0.1", 2525, smarthost=False)
    assert networks.network_refusal("127.0.0.1") is not None
