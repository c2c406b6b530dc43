"""Sizes of the routing, large and api parts, read from ``BENCH_*`` environment variables
so that a developer can run them small (the command line's flags shape forwarding):

- ``BENCH_ALIASES`` (1000000), ``BENCH_DOMAINS`` (1000): the routing part's table
- ``BENCH_ROUTING_SAMPLE`` (5000): existing aliases asked in process and per SMTP round
- ``BENCH_LARGE_MIB`` (25), ``BENCH_LARGE_MESSAGES`` (3): the large part's messages
- ``BENCH_API_SECONDS`` (8): each API round's length
"""

from __future__ import annotations

import os


def env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name}={text!r}: a whole number please") from None


def env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        raise ValueError(f"{name}={text!r}: a number please") from None
