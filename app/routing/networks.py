"""Where delivery may connect: the policy that keeps DNS from steering mail inward.

Whoever controls a domain's DNS chooses where our mail for it goes. Without a policy, an
MX of ``localhost`` or an A record of 10.0.0.5 (a verification mail, a DSN to a forged
sender, a forwarded message) has this host connect to its own services or to the LAN
behind it. So by default delivery connects only to globally reachable unicast addresses
(the IANA special-purpose registries, RFC 6890, as Python's ``ipaddress`` knows them:
loopback, unspecified, link-local, private RFC 1918 and RFC 4193, shared CGNAT 100.64/10,
documentation and reserved ranges all excluded), never to multicast, and never to our
own SMTP listener (mail that "loops back to myself", in Postfix's words). An operator
opens the networks a LAN or test rig needs with ``MAILROUTE_DELIVERY_ALLOWED_NETWORKS``.
The smarthost is not subject to this: the operator chose it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def embedded(address: Address) -> list[Address]:
    """``address`` and any IPv4 address it carries: an IPv4-mapped ``::ffff:127.0.0.1``
    (RFC 4291 2.5.5.2) or a 6to4 ``2002:7f00:1::`` (RFC 3056) reaches that IPv4 host."""
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        for inner in (address.ipv4_mapped, address.sixtofour):
            if inner is not None:
                found.append(inner)
    return found


def is_internal(address: Address) -> bool:
    """Not a globally reachable unicast address, or one that carries such an address."""
    return any(
        not a.is_global or a.is_multicast or a.is_unspecified or a.is_loopback
        for a in embedded(address)
    )


@dataclass(frozen=True, slots=True)
class DeliveryNetworks:
    """The delivery policy: ``allowed`` networks opened by the operator, and ``own``, the
    (address, port) pairs our SMTP server listens on, refused whatever is allowed."""

    allowed: tuple[Network, ...] = ()
    own: frozenset[tuple[Address, int]] = frozenset()

    @classmethod
    def for_listener(
        cls, allowed: Iterable[Network], smtp_host: str, smtp_port: int
    ) -> DeliveryNetworks:
        """The policy for a server listening on ``smtp_host:smtp_port``. Bound to every
        address (0.0.0.0, ::), it is reached at least through loopback; its public
        addresses are not known here, and are refused only by the usual rules."""
        try:
            host = ipaddress.ip_address(smtp_host)
        except ValueError:
            host = None  # a name: the listener's addresses are not ours to resolve here
        own: set[tuple[Address, int]] = set()
        if host is not None and host.is_unspecified:
            own = {(ipaddress.ip_address(a), smtp_port) for a in ("127.0.0.1", "::1")}
        elif host is not None:
            own = {(host, smtp_port)}
        return cls(tuple(allowed), frozenset(own))

    @classmethod
    def for_destinations(
        cls, allowed: Iterable[Network], smtp_host: str, smtp_port: int, *, smarthost: bool
    ) -> DeliveryNetworks:
        """What a new destination's mail hosts are checked against: the MX policy, or
        every address when a smarthost takes all mail (its MX hosts are never used)."""
        if smarthost:
            return cls((ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))
        return cls.for_listener(allowed, smtp_host, smtp_port)

    def refusal(self, address: str, port: int) -> str | None:
        """Why delivery must not connect to ``address:port``, or None when it may."""
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return f"{address} is not an IP address"
        if any((a, port) in self.own for a in embedded(ip)):
            return f"{address}:{port} is this server's own SMTP listener"
        return self._network_refusal(address, ip)

    def permits(self, address: str, port: int) -> bool:
        return self.refusal(address, port) is None

    def network_refusal(self, address: str) -> str | None:
        """Why delivery must not connect to ``address`` on any port, or None. (Our own
        listener is refused by :meth:`refusal`, which knows the port.)"""
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return f"{address} is not an IP address"
        return self._network_refusal(address, ip)

    def _network_refusal(self, address: str, ip: Address) -> str | None:
        if not is_internal(ip):
            return None
        if any(a in network for a in embedded(ip) for network in self.allowed):
            return None
        return f"{address} is an internal address (not in MAILROUTE_DELIVERY_ALLOWED_NETWORKS)"


# The default policy: global unicast addresses only, nothing opened.
GLOBAL_ONLY = DeliveryNetworks()
