"""Values that compare equal to a family of values, for whole-body assertions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Recent:
    """Equal to an ISO 8601 timestamp with a time zone, less than a minute old."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, str):
            return False
        try:
            moment = datetime.fromisoformat(other)
        except ValueError:
            return False
        if moment.tzinfo is None:
            return False
        return abs(datetime.now(UTC) - moment) < timedelta(minutes=1)

    def __repr__(self) -> str:
        return "<a recent aware timestamp>"
