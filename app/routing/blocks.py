"""Blocked senders, as the routing core sees them, and whether one covers a sender.

A block names a full address (``spam@bad.example``) or a domain (``bad.example``). A
domain block covers the domain and every subdomain of it (``mail.bad.example``): a
sender who is refused at one host name should not get in by using another of its own.
An address block covers exactly that address, its local part compared case-insensitively
as ours are (app.routing.address).

The null sender <> is never blocked: it is how bounces, DSNs and automatic replies are
sent (RFC 5321 4.5.5, RFC 3464, RFC 3834 3.3), and it names no one to block.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from app.errors import InvalidDomain
from app.routing.address import normalize_domain

# How many keys one look-up tries (app.services.routes binds a fixed number of
# parameters): the sender's address, then its domain and up to this many less one of
# its parent domains, nearest first.
MAX_SENDER_KEYS = 10


@dataclass(frozen=True, slots=True)
class BlockView:
    """One block: ``sender`` normalised (an address, or a domain without an @); ``rule_id``
    set when it applies only to mail matched by that rule (an alias)."""

    id: int
    sender: str
    rule_id: int | None = None


# Remembered, as parse_address is: every RCPT with a sender asks, and IDNA is most of
# the cost. Pure, and bounded.
@lru_cache(maxsize=8192)
def normalize_sender(sender: str) -> str | None:
    """``sender`` as blocks are stored: local part lower-cased, domain in lower-case
    A-labels; None for the null sender or a domain that does not normalise."""
    local, at, domain = sender.rpartition("@")
    if not at or not local or not domain:
        return None
    try:
        return f"{local.lower()}@{normalize_domain(domain)}"
    except InvalidDomain:
        return None


def sender_keys(sender: str) -> tuple[str, ...]:
    """The block senders that may cover ``sender`` ("" for <>: none): the address, its
    domain, and that domain's parents (``bad.example`` for ``mail.bad.example``) down to
    two labels, as many as MAX_SENDER_KEYS allows. A deeper sender keeps its own domain
    and the shortest parents, where blocks are put."""
    address = normalize_sender(sender)
    if address is None:
        return ()
    labels = address.rpartition("@")[2].split(".")
    parents = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    if len(parents) > MAX_SENDER_KEYS - 1:
        parents = [parents[0], *parents[-(MAX_SENDER_KEYS - 2) :]]
    return (address, *parents)


def covers(block: BlockView, sender: str) -> bool:
    """Whether ``block`` covers ``sender`` ("" for <>)."""
    address = normalize_sender(sender)
    if address is None:
        return False
    if "@" in block.sender:
        return address == block.sender
    domain = address.rpartition("@")[2]
    return domain == block.sender or domain.endswith("." + block.sender)
