"""A message as the SMTP server hands it to inbound.store, for the storage tests."""

from __future__ import annotations

from app.routing import Decision, MatchKind, Outcome
from app.services.inbound import Accepted, Arrival, Incoming


def arrival(content: bytes | bytearray) -> Incoming:
    """A message for shop@example.org, forwarded to me@inbox.example."""
    decision = Decision(
        Outcome.FORWARD, "test", matched_by=MatchKind.EXACT, destinations=("me@inbox.example",)
    )
    return Incoming(
        Arrival("q1", "192.0.2.7", "client.example", "a@sender.example", content, None),
        [Accepted("shop@example.org", decision)],
    )
