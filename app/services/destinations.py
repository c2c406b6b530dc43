"""Destinations: the real inboxes mail is forwarded to, verified before any mail goes there."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Destination, RuleDestination, VerificationToken
from app.db.types import utcnow
from app.errors import (
    AlreadyVerified,
    DestinationExists,
    DestinationInUse,
    DestinationNotFound,
    DnsError,
    InvalidAddress,
    UndeliverableDomain,
    VerificationFailed,
)
from app.resolver import Resolver, is_null_mx
from app.routing.networks import GLOBAL_ONLY, DeliveryNetworks
from app.services import outbox, verification_limits
from app.services.digests import hash_secret
from app.services.integrity import flush_unique

log = logging.getLogger(__name__)

VERIFICATION_LIFETIME = timedelta(hours=24)
UNUSABLE_LINK = "this verification link is unknown, already used or expired; ask for a new one"
PENDING = "pending"
VERIFIED = "verified"


@dataclass(frozen=True, slots=True)
class MailIdentity:
    """Who we are in the mail we write: the mail host name, and the base of our links."""

    hostname: str
    public_url: str

    @property
    def sender(self) -> str:
        return f"mailroute-noreply@{self.hostname}"


def normalize_email(email: str) -> str:
    """A deliverable-looking address: local part as given, domain in lower-case ASCII."""
    try:
        result = validate_email(email, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{email!r} is not a valid email address: {exc}") from None
    return f"{result.local_part}@{result.ascii_domain.lower()}"


async def check_receives_mail(
    resolver: Resolver, domain: str, networks: DeliveryNetworks = GLOBAL_ONLY
) -> None:
    """Refuse a domain that publishes a null MX (RFC 7505): its owner says it takes no mail;
    and one whose mail hosts all resolve to addresses delivery will not connect to
    (app.routing.networks): its verification mail could never leave.

    Only those explicit answers refuse. What this host's resolver cannot see (NXDOMAIN
    from a split-horizon or offline resolver, a lame server, a timeout) may still be
    reachable through a smarthost or later; delivery of the verification mail decides.
    """
    try:
        records = await resolver.mx(domain)
    except DnsError as exc:
        log.info("could not check whether %s receives mail: %s", domain, exc)
        return
    if is_null_mx(records):
        raise UndeliverableDomain(f"{domain} publishes a null MX: it accepts no mail")
    hosts = sorted({r.exchange for r in records if r.exchange}) if records else [domain]
    refused = await _refused_hosts(resolver, hosts, networks)
    if refused is not None:
        raise UndeliverableDomain(
            f"the mail hosts of {domain} resolve only to internal addresses, which this"
            f" server does not deliver to ({refused}); an operator may allow a network"
            " with MAILROUTE_DELIVERY_ALLOWED_NETWORKS"
        )


async def _refused_hosts(
    resolver: Resolver, hosts: list[str], networks: DeliveryNetworks
) -> str | None:
    """The first refusal when every host resolves and every address is refused; else None."""
    first: str | None = None
    for host in hosts:
        try:
            addresses = await resolver.addresses(host)
        except DnsError:
            return None
        if not addresses:
            return None
        for address in addresses:
            refusal = networks.network_refusal(address)
            if refusal is None:
                return None
            first = first or f"{host}: {refusal}"
    return first


async def create_destination(
    session: AsyncSession,
    email: str,
    *,
    resolver: Resolver,
    identity: MailIdentity,
    networks: DeliveryNetworks = GLOBAL_ONLY,
) -> Destination:
    """Add a pending destination and mail it a verification link."""
    address = normalize_email(email)
    # DNS first: the session has not begun yet, so no database lock waits on the network.
    await check_receives_mail(resolver, address.rpartition("@")[2], networks)
    await _refuse_duplicate(session, address)
    destination = Destination(email=address, status=PENDING)
    session.add(destination)
    await flush_unique(session, DestinationExists(f"{address} is already a destination"))
    await _send_verification(session, destination, identity)
    return destination


async def add_verified_destination(session: AsyncSession, email: str) -> Destination:
    """The operator's shortcut (CLI only): an inbox they own, verified without a round trip."""
    address = normalize_email(email)
    await _refuse_duplicate(session, address)
    destination = Destination(email=address, status=VERIFIED, verified_at=utcnow())
    session.add(destination)
    await flush_unique(session, DestinationExists(f"{address} is already a destination"))
    return destination


async def resend_verification(
    session: AsyncSession, destination_id: int, *, identity: MailIdentity
) -> Destination:
    destination = await get_destination(session, destination_id)
    if destination.status == VERIFIED:
        raise AlreadyVerified(f"{destination.email} is already verified")
    # Only the newest link works: older ones may sit in a mailbox that leaked.
    await session.execute(
        delete(VerificationToken).where(VerificationToken.destination_id == destination.id)
    )
    await _send_verification(session, destination, identity)
    return destination


async def list_destinations(session: AsyncSession) -> list[Destination]:
    return list(await session.scalars(select(Destination).order_by(Destination.email)))


async def get_destination(session: AsyncSession, destination_id: int) -> Destination:
    destination = await session.get(Destination, destination_id)
    if destination is None:
        raise DestinationNotFound(f"no destination with id {destination_id}")
    return destination


async def find_destinations(session: AsyncSession, emails: list[str]) -> dict[str, Destination]:
    """Destinations by the normalised form of each of ``emails`` (case-insensitive)."""
    wanted = {normalize_email(e).lower(): e for e in emails}
    rows = await session.scalars(
        select(Destination).where(func.lower(Destination.email).in_(list(wanted)))
    )
    return {row.email.lower(): row for row in rows}


async def delete_destination(session: AsyncSession, destination_id: int) -> None:
    destination = await get_destination(session, destination_id)
    in_use = await session.scalar(
        select(func.count()).where(RuleDestination.destination_id == destination.id)
    )
    if in_use:
        raise DestinationInUse(
            f"{destination.email} is used by {in_use} rule(s); remove it from them first"
        )
    await session.delete(destination)
    await session.flush()


async def pending_verification(session: AsyncSession, token: str) -> Destination:
    """The destination a still-usable link would verify; nothing changes."""
    return (await _usable_token(session, token, utcnow())).destination


async def verify(session: AsyncSession, token: str) -> Destination:
    """Use a verification link: single use, within its lifetime."""
    now = utcnow()
    row = await _usable_token(session, token, now)
    row.used_at = now
    destination = row.destination
    if destination.status != VERIFIED:
        destination.status = VERIFIED
        destination.verified_at = now
    await session.flush()
    return destination


async def _usable_token(session: AsyncSession, token: str, now: datetime) -> VerificationToken:
    row = await session.scalar(
        select(VerificationToken).where(VerificationToken.token_hash == hash_secret(token))
    )
    # Unknown, used and expired get one answer: telling them apart would confirm to whoever
    # tries links that one was once issued.
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise VerificationFailed(UNUSABLE_LINK)
    await session.refresh(row, ["destination"])
    return row


async def _refuse_duplicate(session: AsyncSession, address: str) -> None:
    existing = await session.scalar(
        select(Destination.id).where(func.lower(Destination.email) == address.lower())
    )
    if existing is not None:
        raise DestinationExists(f"{address} is already a destination (id {existing})")


async def _send_verification(
    session: AsyncSession, destination: Destination, identity: MailIdentity
) -> None:
    now = utcnow()
    await verification_limits.take_send(session, destination, now)
    token = secrets.token_urlsafe(32)
    session.add(
        VerificationToken(
            destination_id=destination.id,
            token_hash=hash_secret(token),
            expires_at=now + VERIFICATION_LIFETIME,
            created_at=now,
        )
    )
    link = f"{identity.public_url}/v1/verify/{token}"
    text = (
        f"Someone asked the mailroute server {identity.hostname} to forward mail to\n"
        f"{destination.email}.\n\n"
        "To confirm that you want it, open this link and press Confirm (within 24 hours):\n\n"
        f"    {link}\n\n"
        "If you did not ask for this, ignore this message: nothing will be forwarded to you.\n"
    )
    message = outbox.compose(
        sender=identity.sender,
        sender_name="mailroute",
        recipient=destination.email,
        subject="Confirm forwarding to this address",
        text=text,
        hostname=identity.hostname,
        now=now,
    )
    await outbox.enqueue(
        session,
        message,
        kind="verification",
        mail_from=identity.sender,
        recipients=[destination.email],
    )
