"""Disposable local parts: unguessable yet easy to read aloud and type."""

from __future__ import annotations

import math
import secrets

# 31 symbols without look-alikes (no 0/o, 1/l/i): about 4.95 bits each.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
GROUPS = 3
GROUP_LENGTH = 5
ENTROPY_BITS = GROUPS * GROUP_LENGTH * math.log2(len(ALPHABET))


def generate_local_part() -> str:
    """Three groups of five symbols, such as ``k7fmq-x9p2h-3tnwa`` (74 bits)."""
    return "-".join(
        "".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS)
    )
