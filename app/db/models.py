"""The schema. It reaches a database only through the Alembic migrations in migrations/.

Management: domains, rules (aliases and catch-alls), destinations and their verification
tokens (and when they were sent), blocked senders, API tokens. Mail flow: a message is stored once
(``messages``), and each (recipient, destination) pair to send it to is one
``deliveries`` row that workers claim.
``activity`` is the log users read; it outlives messages and deliveries.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.db.types import UTCDateTime, utcnow

# Named constraints, so that migrations can alter them on SQLite too (batch mode).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A BIGINT that is still SQLite's INTEGER PRIMARY KEY (the rowid), so it autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    subaddressing: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    rules: Mapped[list[Rule]] = relationship(
        back_populates="domain", cascade="all, delete-orphan", passive_deletes=True
    )


class Destination(Base):
    __tablename__ = "destinations"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VerificationToken(Base):
    __tablename__ = "verification_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of the token: the token itself is only ever in the mail we send.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    destination: Mapped[Destination] = relationship()


class VerificationSend(Base):
    """One verification message mailed to a destination, for its resend limits
    (app.services.verification_limits); rows older than a day are pruned as it sends."""

    __tablename__ = "verification_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="CASCADE"), index=True
    )
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Rule(Base):
    """An alias (``kind='alias'``) or a domain's catch-all (``kind='catch_all'``, local part '')."""

    __tablename__ = "rules"
    # The hot path: (domain_id, local_part IN (...)) is this unique index.
    __table_args__ = (UniqueConstraint("domain_id", "local_part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="alias")
    local_part: Mapped[str] = mapped_column(String(64))
    disposable: Mapped[bool] = mapped_column(Boolean, default=False)
    action: Mapped[str] = mapped_column(String(16), default="forward")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_messages: Mapped[int | None] = mapped_column(Integer)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    domain: Mapped[Domain] = relationship(back_populates="rules")
    destinations: Mapped[list[Destination]] = relationship(
        secondary="rule_destinations", order_by="Destination.email"
    )


class RuleDestination(Base):
    __tablename__ = "rule_destinations"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True
    )
    # RESTRICT: a destination in use is not deleted behind its rules' backs.
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("destinations.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class Block(Base):
    """A blocked sender (an address, or a domain and its subdomains: app.routing.blocks):
    for every domain (``domain_id`` NULL), one domain, or one alias (``rule_id``, with its
    domain). Deleting the domain or alias deletes the blocks scoped to it."""

    __tablename__ = "blocks"
    # The RCPT look-up: blocks.sender IN (the sender's keys), this index.
    __table_args__ = (Index("ix_blocks_sender", "sender"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(String(320))
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    domain: Mapped[Domain | None] = relationship()
    rule: Mapped[Rule | None] = relationship()


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Message(Base):
    """One stored message, whatever its number of recipients; ``content`` is exactly
    what goes out (our Received: line followed by the client's bytes)."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # inbound, verification, dsn
    # Names the message in our Received: line, replies and logs before it has a row id.
    queue_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    helo: Mapped[str | None] = mapped_column(String(255))
    mail_from: Mapped[str] = mapped_column(String(320))  # '' is the null sender <>
    message_id: Mapped[str | None] = mapped_column(String(998))
    size: Mapped[int] = mapped_column(BigInteger)
    # The inbound checks' verdicts (app.inbound_auth); NULL when not checked.
    spf: Mapped[str | None] = mapped_column(String(16))
    dkim: Mapped[str | None] = mapped_column(String(16))
    dmarc: Mapped[str | None] = mapped_column(String(16))
    arc: Mapped[str | None] = mapped_column(String(16))
    spam_score: Mapped[float | None] = mapped_column(Float)
    spam_action: Mapped[str | None] = mapped_column(String(16))
    # Whether the sender is proven (SPF or aligned DKIM): only then does a failure bounce
    # to it (no backscatter); NULL: not checked, as before the checks existed.
    sender_authenticated: Mapped[bool | None] = mapped_column(Boolean)
    content: Mapped[bytes] = mapped_column(LargeBinary)  # the last column: see app.db.blobs


class MessagePart(Base):
    """A slice of a large message's content, in order: on PostgreSQL a message from
    app.db.parts.PARTS_FROM octets keeps its content here and an empty ``content``."""

    __tablename__ = "message_parts"

    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Delivery(Base):
    """One message to one destination; the unit workers claim, retry and finish."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rules.id", ondelete="SET NULL"))
    rule: Mapped[str | None] = mapped_column(String(400))  # e.g. shop@example.org, for the log
    original_rcpt: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))  # the rewritten envelope recipient
    mail_from: Mapped[str] = mapped_column(String(320))  # the rewritten (SRS) envelope sender
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_remote: Mapped[str | None] = mapped_column(String(255))
    last_reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    message: Mapped[Message] = relationship()


class Activity(Base):
    """One line of the activity log: a message received, refused, or a delivery attempt."""

    __tablename__ = "activity"
    __table_args__ = (Index("ix_activity_domain_at", "domain", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    message_ref: Mapped[int | None] = mapped_column(BigInteger)  # no FK: outlives the message
    client_ip: Mapped[str | None] = mapped_column(String(64))
    mail_from: Mapped[str | None] = mapped_column(String(320))
    address: Mapped[str | None] = mapped_column(String(320))  # the original recipient
    domain: Mapped[str | None] = mapped_column(String(253))
    rule: Mapped[str | None] = mapped_column(String(400))
    action: Mapped[str | None] = mapped_column(String(16))
    destination: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))
    remote_host: Mapped[str | None] = mapped_column(String(255))
    reply: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(998))
    size: Mapped[int | None] = mapped_column(BigInteger)
    spf: Mapped[str | None] = mapped_column(String(16))
    dkim: Mapped[str | None] = mapped_column(String(16))
    dmarc: Mapped[str | None] = mapped_column(String(16))
    arc: Mapped[str | None] = mapped_column(String(16))
    spam_score: Mapped[float | None] = mapped_column(Float)
    spam_action: Mapped[str | None] = mapped_column(String(16))


class KeyValue(Base):
    """Small server-wide state shared by every node, e.g. the generated SRS secret."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
