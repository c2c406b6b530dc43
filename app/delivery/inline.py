"""The in-session delivery attempt's result, as the SMTP server turns it into a reply."""

from __future__ import annotations

from dataclasses import dataclass

from app.delivery import dsn
from app.delivery.outcome import Outcome


@dataclass(frozen=True, slots=True)
class InlineResult:
    """What the in-session attempt means for the SMTP client's answer."""

    delivered: bool = False  # every destination took it
    refusal: Outcome | None = None  # every destination refused it for good: this reply
    refused_for: str | None = None  # the recipient the client used
    hidden_destination: str | None = None  # where it was forwarded: kept out of the reply

    def refusal_reply(self) -> str | None:
        """The refusal as an SMTP reply for the client, the destination replaced by the
        address the client used (a disposable alias must not leak its inbox)."""
        if self.refusal is None or self.refused_for is None:
            return None
        code = self.refusal.reply[:3] if self.refusal.reply[:1] == "5" else "550"
        text = dsn.hide_destination(
            self.refusal.reply[4:], self.hidden_destination or "", self.refused_for
        )
        text = text.removeprefix(self.refusal.status or "").strip()
        text = "".join(c if " " <= c <= "~" else "?" for c in text)[:400]
        status = self.refusal.status or "5.0.0"
        return f"{code} {status} <{self.refused_for}>: forwarding refused: {text}"
