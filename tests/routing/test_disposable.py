"""Generated disposable local parts (app.routing.disposable)."""

from __future__ import annotations

import math
import re

from app.routing import normalize_local_part
from app.routing.disposable import (
    ALPHABET,
    ENTROPY_BITS,
    GROUP_LENGTH,
    GROUPS,
    generate_local_part,
)

DRAWS = 10_000
SYMBOL = f"[{re.escape(ALPHABET)}]"
FORMAT = re.compile(f"{SYMBOL}{{5}}-{SYMBOL}{{5}}-{SYMBOL}{{5}}")


def test_generate_local_part_is_three_groups_of_five_symbols() -> None:
    assert FORMAT.fullmatch(generate_local_part())


def test_generate_local_part_matches_the_declared_shape() -> None:
    groups = generate_local_part().split("-")
    assert [len(g) for g in groups] == [GROUP_LENGTH] * GROUPS


def test_alphabet_has_no_look_alike_symbols() -> None:
    assert set(ALPHABET).isdisjoint("0o1li")


def test_alphabet_has_no_repeated_symbol() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET)


def test_alphabet_is_lower_case_ascii_letters_and_digits() -> None:
    assert set(ALPHABET) <= set("abcdefghijklmnopqrstuvwxyz0123456789")


def test_entropy_bits_is_at_least_60() -> None:
    assert ENTROPY_BITS >= 60


def test_entropy_bits_counts_distinct_symbols_only() -> None:
    assert math.isclose(ENTROPY_BITS, GROUPS * GROUP_LENGTH * math.log2(len(set(ALPHABET))))


def test_generate_local_part_is_unique_over_many_draws() -> None:
    assert len({generate_local_part() for _ in range(DRAWS)}) == DRAWS


def test_generate_local_part_uses_every_symbol_of_the_alphabet() -> None:
    drawn = set("".join(generate_local_part() for _ in range(DRAWS)).replace("-", ""))
    assert drawn == set(ALPHABET)


def test_generate_local_part_is_its_own_alias_key() -> None:
    local_part = generate_local_part()
    assert normalize_local_part(local_part, "ours.example") == local_part
