"""Queueing mail that we write ourselves (verification messages, later DSNs) for delivery."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, formataddr

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Delivery, Message
from app.db.types import utcnow

# RFC 5321 4.5.4.1 suggests giving up after 4-5 days; the queue's own setting may differ.
DEFAULT_QUEUE_LIFETIME = timedelta(days=5)


def compose(
    *,
    sender: str,
    sender_name: str,
    recipient: str,
    subject: str,
    text: str,
    hostname: str,
    now: datetime | None = None,
) -> EmailMessage:
    """A plain-text message of ours. Header values are set through the email package, which
    refuses CR and LF in them, so nothing user-supplied can inject a header."""
    message = EmailMessage(policy=SMTP if recipient.isascii() else SMTPUTF8)
    message["From"] = formataddr((sender_name, sender))
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(now or utcnow())
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{hostname}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    # 7bit keeps links whole for any reader; 8bit only when the text needs it.
    message.set_content(text, cte="7bit" if text.isascii() else "8bit")
    return message


async def enqueue(
    session: AsyncSession,
    message: EmailMessage,
    *,
    kind: str,
    mail_from: str,
    recipients: list[str],
    lifetime: timedelta = DEFAULT_QUEUE_LIFETIME,
) -> Message:
    """Store ``message`` once and queue one delivery per recipient, due now."""
    return await enqueue_raw(
        session,
        message.as_bytes(),
        kind=kind,
        mail_from=mail_from,
        recipients=recipients,
        message_id=str(message["Message-ID"]),
        lifetime=lifetime,
    )


async def enqueue_raw(
    session: AsyncSession,
    content: bytes,
    *,
    kind: str,
    mail_from: str,
    recipients: list[str],
    message_id: str | None,
    lifetime: timedelta = DEFAULT_QUEUE_LIFETIME,
    now: datetime | None = None,
) -> Message:
    """Queue message bytes we composed ourselves (a DSN), exactly as given."""
    now = now or utcnow()
    stored = Message(
        kind=kind,
        queue_id=secrets.token_hex(6),
        mail_from=mail_from,
        message_id=message_id,
        size=len(content),
        content=content,
        created_at=now,
    )
    session.add(stored)
    await session.flush()
    for recipient in recipients:
        session.add(
            Delivery(
                message_id=stored.id,
                original_rcpt=recipient,
                recipient=recipient,
                mail_from=mail_from,
                next_attempt_at=now,
                expires_at=now + lifetime,
            )
        )
    await session.flush()
    return stored
