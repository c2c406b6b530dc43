"""Where mail for a domain goes: its MX hosts in preference order, equal ones shuffled
(RFC 5321 5.1), the domain itself when it has no MX, nowhere when it has a null MX (RFC 7505),
and only to addresses the delivery policy permits (app.routing.networks).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby

from app.delivery.outcome import Outcome, Result
from app.errors import DnsNoSuchDomain, DnsTemporaryFailure
from app.resolver import MxRecord, Resolver, is_null_mx
from app.routing.networks import DeliveryNetworks

log = logging.getLogger(__name__)

# Postfix says 5.4.4 when a domain's mail "loops back to myself"; so does an MX pointing at
# an internal address: no host that may be connected to is left, and DNS is the sender's
# (or the forger's) answer, so trying again later will not help.
S554_ONLY_INTERNAL_HOSTS = (
    "554 5.4.4 the mail hosts of {domain} resolve only to internal or own addresses,"
    " which this server does not deliver to"
)


@dataclass(frozen=True, slots=True)
class Target:
    host: str  # the MX host name, for the log and the TLS server name
    address: str  # the IP to connect to, resolved through our resolver
    port: int


class NoRoute(Exception):
    """No host to try now; ``outcome`` says whether that is final."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reply)
        self.outcome = outcome


async def resolve_targets(
    resolver: Resolver,
    domain: str,
    port: int,
    shuffle: Callable[[list[str]], None] = random.shuffle,
    *,
    networks: DeliveryNetworks,
) -> list[Target]:
    try:
        records = await resolver.mx(domain)
    except DnsNoSuchDomain:
        raise NoRoute(
            Outcome(Result.PERMANENT, f"550 5.1.2 {domain} does not exist", None, "5.1.2")
        ) from None
    except DnsTemporaryFailure as exc:
        raise NoRoute(Outcome(Result.TEMPORARY, exc.message, None, "4.4.3")) from None
    if is_null_mx(records):
        raise NoRoute(
            Outcome(
                Result.PERMANENT, f"556 5.1.10 {domain} accepts no mail (null MX)", None, "5.1.10"
            )
        )
    hosts = _ordered_hosts(records, shuffle) if records else [domain]  # implicit MX
    found = [t for host in hosts for t in await _addresses(resolver, host, port)]
    targets = [t for t in found if _permitted(t, networks)]
    if found and not targets and all(any(t.host == h for t in found) for h in hosts):
        # Every host resolved, every address refused. A host that did not resolve at
        # all may later resolve somewhere permitted: that case defers, below.
        raise NoRoute(
            Outcome(Result.PERMANENT, S554_ONLY_INTERNAL_HOSTS.format(domain=domain), None, "5.4.4")
        )
    if not targets:
        raise NoRoute(
            Outcome(
                Result.TEMPORARY, f"no address found for the mail hosts of {domain}", None, "4.4.3"
            )
        )
    return targets


def _ordered_hosts(records: list[MxRecord], shuffle: Callable[[list[str]], None]) -> list[str]:
    hosts: list[str] = []
    for _preference, group in groupby(
        sorted(records, key=lambda r: r.preference), key=lambda r: r.preference
    ):
        same = [r.exchange for r in group]
        shuffle(same)
        hosts.extend(same)
    return hosts


async def _addresses(resolver: Resolver, host: str, port: int) -> list[Target]:
    try:
        return [Target(host, address, port) for address in await resolver.addresses(host)]
    except (DnsNoSuchDomain, DnsTemporaryFailure):
        return []  # try the next MX; if none resolves, the caller defers


def _permitted(target: Target, networks: DeliveryNetworks) -> bool:
    refusal = networks.refusal(target.address, target.port)
    if refusal is not None:
        log.warning("not connecting to %s[%s]: %s", target.host, target.address, refusal)
    return refusal is None
