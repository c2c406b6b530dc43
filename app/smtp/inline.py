"""The in-session delivery attempt as the SMTP server sees it: the worker tries a stored
message while the client waits, and its result may become the reply to DATA."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from app.smtp import replies

log = logging.getLogger(__name__)


class InlineResult(Protocol):
    @property
    def delivered(self) -> bool: ...

    def refusal_reply(self) -> str | None: ...


class InlineDelivery(Protocol):
    """The delivery worker as the SMTP server sees it (app.delivery.worker.DeliveryWorker)."""

    async def attempt_inline(self, ids: Sequence[int], patience: float) -> InlineResult: ...


async def deliver_in_session(
    inline: InlineDelivery, queue_id: str, ids: list[int], patience: float
) -> str | None:
    """The reply when the in-session attempt settled the message, else None (queue it).
    The message is already committed: whatever happens here, nothing is lost."""
    try:
        result = await inline.attempt_inline(ids, patience)
    except Exception:
        log.exception("in-session delivery of %s failed; the queue takes over", queue_id)
        return None
    refusal = result.refusal_reply()
    if refusal is not None:
        log.info("message %s refused in session by every destination", queue_id)
        return refusal
    if result.delivered:
        return replies.S250_DELIVERED.format(queue_id=queue_id)
    return None
