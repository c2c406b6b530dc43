from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasPath, BaseModel, ConfigDict, Field

StatusName = Literal["forwarded", "dropped", "rejected", "blocked", "deferred", "bounced"]
# RFC 8601's result words, as the inbound checks record them (app.inbound_auth.verdicts).
SpfResult = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
DkimResult = Literal["pass", "fail", "neutral", "policy", "none", "temperror", "permerror"]
DmarcResult = Literal["pass", "fail", "none", "temperror", "permerror"]
ArcResult = Literal["pass", "fail", "none", "temperror"]
SpamAction = Literal[
    "no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"
]


class ActivityPublic(BaseModel):
    id: int
    at: datetime
    status: StatusName
    client_ip: str | None
    mail_from: str | None
    address: str | None
    rule: str | None
    action: str | None
    destination: str | None
    remote_host: str | None
    reply: str | None
    message_id: str | None
    size: int | None
    # The inbound checks' verdicts; null when the message was not checked.
    spf: str | None = None
    dkim: str | None = None
    dmarc: str | None = None
    arc: str | None = None
    spam_score: float | None = None
    spam_action: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "at": "2026-11-29T10:00:00Z",
                    "status": "forwarded",
                    "client_ip": "192.0.2.10",
                    "mail_from": "alice@sender.example",
                    "address": "shop@example.org",
                    "rule": "shop@example.org",
                    "action": "forward",
                    "destination": "me@inbox.example",
                    "remote_host": "mx.inbox.example[198.51.100.7]",
                    "reply": "250 2.0.0 Ok: queued as 4Bc1",
                    "message_id": "<1@sender.example>",
                    "size": 4096,
                    "spf": "pass",
                    "dkim": "pass",
                    "dmarc": "pass",
                    "arc": "none",
                    "spam_score": 1.2,
                    "spam_action": "no action",
                }
            ]
        },
    )


class ActivityPage(BaseModel):
    items: list[ActivityPublic]
    next_before: int | None

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [], "next_before": None}]})


class QueueItemPublic(BaseModel):
    id: int
    queue_id: str | None = Field(validation_alias=AliasPath("message", "queue_id"))
    status: Literal["queued", "delivering"]
    original_rcpt: str
    recipient: str
    mail_from: str
    attempts: int
    next_attempt_at: datetime
    expires_at: datetime
    last_remote: str | None
    last_reply: str | None
    created_at: datetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "queue_id": "17b1e07a15b7",
                    "status": "queued",
                    "original_rcpt": "shop@example.org",
                    "recipient": "me@inbox.example",
                    "mail_from": "SRS0=9FvT=JS=sender.example=alice@mx.example.org",
                    "attempts": 2,
                    "next_attempt_at": "2026-11-29T10:04:00Z",
                    "expires_at": "2026-12-04T10:00:00Z",
                    "last_remote": "mx.inbox.example[198.51.100.7]",
                    "last_reply": "451 4.3.0 Try again later",
                    "created_at": "2026-11-29T10:00:00Z",
                }
            ]
        }
    )
