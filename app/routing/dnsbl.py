"""DNS blocklists (RFC 5782), the pure half: the name to ask for a client's address in a
zone, and whether an answer lists it. The look-up itself is app.smtp.blocklists."""

from __future__ import annotations

import ipaddress

# One set of allowed values per octet of the A record (app.config.DnsblZone).
ReplyFilter = tuple[frozenset[int], ...]
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def query_name(ip: str, zone: str) -> str:
    """``zone`` under the address reversed: octets for IPv4 (RFC 5782 2.1), nibbles for
    IPv6 (2.4), an IPv4-mapped IPv6 address as the IPv4 address it is."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    reversed_address = address.reverse_pointer.rpartition(".")[0].rpartition(".")[0]
    return f"{reversed_address}.{zone}"


def lists(reply: str, reply_filter: ReplyFilter | None) -> bool:
    """Whether the A record ``reply`` lists the client. Without a filter, any address in
    127.0.0.0/8 does (RFC 5782 2.1: entries are there); one outside it is a resolver
    rewriting NXDOMAIN into an address of its own, which would list every client."""
    try:
        address = ipaddress.IPv4Address(reply)
    except ValueError:
        return False
    if reply_filter is None:
        return address in LOOPBACK
    return all(
        octet in allowed for octet, allowed in zip(address.packed, reply_filter, strict=True)
    )
