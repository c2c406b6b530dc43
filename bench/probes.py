"""The addresses a routing bench asks about: existing aliases, unknown local parts on
served domains, and domains not served at all, shuffled together."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from bench.seed import Corpus

ALIAS = "alias"
UNKNOWN = "unknown"
UNSERVED = "unserved"
# What app.services.routes.route must decide for each kind: the bench checks every answer.
EXPECTED = {ALIAS: "forward", UNKNOWN: "unknown_address", UNSERVED: "domain_not_served"}


@dataclass(frozen=True, slots=True)
class Probe:
    kind: str
    address: str


def probes(corpus: Corpus, rng: random.Random, *, aliases: int, strangers: int) -> list[Probe]:
    """``aliases`` distinct existing aliases, ``strangers`` unknown and as many unserved."""
    found = [Probe(ALIAS, corpus.address(i)) for i in rng.sample(range(corpus.aliases), aliases)]
    # "nobody" is none of seed.Corpus's local-part patterns, so these never exist.
    unknown = [
        Probe(
            UNKNOWN,
            f"nobody{rng.randrange(10**9)}@{corpus.domain_name(rng.randrange(corpus.domains))}",
        )
        for _ in range(strangers)
    ]
    unserved = [
        Probe(UNSERVED, f"{corpus.local_part(rng.randrange(corpus.aliases))}@other{k}.example.net")
        for k in range(strangers)
    ]
    mixed = found + unknown + unserved
    rng.shuffle(mixed)
    return mixed


def by_kind(items: Sequence[Probe]) -> dict[str, list[Probe]]:
    grouped: dict[str, list[Probe]] = {}
    for item in items:
        grouped.setdefault(item.kind, []).append(item)
    return grouped
