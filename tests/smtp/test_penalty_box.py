"""The penalty box's arithmetic, with a clock the test moves: 5 strikes within 10 minutes
box an address for an hour; strikes further apart do not; memory stays bounded."""

from __future__ import annotations

from app.smtp.limits import PenaltyBox


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_penalty_box_five_strikes_in_ten_minutes_box_for_an_hour() -> None:
    clock = Clock()
    box = PenaltyBox(clock=clock)
    assert [box.strike("192.0.2.1") for _ in range(5)] == [False] * 4 + [True]
    clock.now += 3599
    assert box.is_boxed("192.0.2.1")
    clock.now += 2
    assert not box.is_boxed("192.0.2.1")


def test_penalty_box_strikes_more_than_ten_minutes_apart_do_not_add_up() -> None:
    clock = Clock()
    box = PenaltyBox(clock=clock)
    for _ in range(20):
        assert not box.strike("192.0.2.1")
        clock.now += 151  # four strikes in any ten minutes, never five
    assert not box.is_boxed("192.0.2.1")


def test_penalty_box_counts_each_address_on_its_own() -> None:
    box = PenaltyBox(clock=Clock())
    for _ in range(4):
        box.strike("192.0.2.1")
        box.strike("192.0.2.2")
    assert not box.is_boxed("192.0.2.1") and not box.is_boxed("192.0.2.2")


def test_penalty_box_forgets_the_oldest_past_its_bound() -> None:
    box = PenaltyBox(strikes=1, max_tracked=3, clock=Clock())
    for n in range(5):
        box.strike(f"192.0.2.{n}")
    assert [box.is_boxed(f"192.0.2.{n}") for n in range(5)] == [False, False, True, True, True]
