"""app.services.destinations: address normalisation and the "does it take mail" check."""

from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import Delivery, Destination, Message
from app.errors import InvalidAddress, UndeliverableDomain
from app.resolver import MxRecord
from app.routing.networks import DeliveryNetworks
from app.services.destinations import (
    MailIdentity,
    check_receives_mail,
    create_destination,
    normalize_email,
)
from tests.fakes import FakeResolver

PUBLIC_ADDRESS = "93.184.215.14"  # a global unicast address: delivery may connect there

# --- normalize_email ----------------------------------------------------------------------


def test_normalize_email_lowercases_domain_keeps_local_part() -> None:
    assert normalize_email("John.Doe@Inbox.EXAMPLE") == "John.Doe@inbox.example"


def test_normalize_email_encodes_unicode_domain_as_a_labels() -> None:
    assert normalize_email("me@Bücher.example") == "me@xn--bcher-kva.example"


def test_normalize_email_composes_unicode_local_part() -> None:
    # "e" + COMBINING ACUTE ACCENT becomes "é" (NFC), as RFC 6532 3.1 asks.
    assert normalize_email("e\u0301@inbox.example") == "\u00e9@inbox.example"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no-at-sign",
        "@inbox.example",
        "me@",
        "me@@inbox.example",
        "me@localhost",
        "Me <me@inbox.example>",
        '"quoted"@inbox.example',
        "me@[192.0.2.1]",
        "me@inbox.example\n",
        "me..double@inbox.example",
    ],
)
def test_normalize_email_refuses_invalid_address(text: str) -> None:
    with pytest.raises(InvalidAddress) as raised:
        normalize_email(text)

    assert raised.value.message.startswith(f"{text!r} is not a valid email address: ")


# --- check_receives_mail ------------------------------------------------------------------


async def test_check_receives_mail_accepts_domain_with_mx(resolver: FakeResolver) -> None:
    await check_receives_mail(resolver, "inbox.example")

    assert resolver.queries == [("MX", "inbox.example"), ("A", "mx.inbox.example")]


async def test_check_receives_mail_refuses_null_mx(resolver: FakeResolver) -> None:
    resolver.mx_records["nomail.example"] = [MxRecord(0, "")]

    with pytest.raises(UndeliverableDomain) as raised:
        await check_receives_mail(resolver, "nomail.example")

    assert raised.value.message == "nomail.example publishes a null MX: it accepts no mail"


async def test_check_receives_mail_null_mx_among_others_is_not_null_mx(
    resolver: FakeResolver,
) -> None:
    # RFC 7505 3: a null MX is the domain's only MX; with others, it is just misconfigured.
    resolver.mx_records["odd.example"] = [MxRecord(0, ""), MxRecord(10, "mx.odd.example")]

    await check_receives_mail(resolver, "odd.example")

    assert resolver.queries == [("MX", "odd.example"), ("A", "mx.odd.example")]


async def test_check_receives_mail_nxdomain_does_not_block(resolver: FakeResolver) -> None:
    # Only a published null MX refuses: this host's resolver may not see what a smarthost
    # can reach (split horizon, offline resolver), and delivery decides in the end.
    await check_receives_mail(resolver, "nowhere.example")

    assert resolver.queries == [("MX", "nowhere.example")]


async def test_check_receives_mail_accepts_address_without_mx(resolver: FakeResolver) -> None:
    # RFC 5321 5.1: no MX records, so the domain's own address is the implicit MX.
    resolver.address_records["host.example"] = [PUBLIC_ADDRESS]

    await check_receives_mail(resolver, "host.example")

    assert resolver.queries == [("MX", "host.example"), ("A", "host.example")]


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["::1", "10.0.0.25"], ["100.64.0.1"], ["::ffff:127.0.0.1"], ["fd12::1"]],
)
async def test_check_receives_mail_refuses_hosts_only_internal(
    resolver: FakeResolver, addresses: list[str]
) -> None:
    resolver.mx_records["lan.example"] = [MxRecord(10, "localhost"), MxRecord(20, "mx.lan")]
    resolver.address_records |= {"localhost": ["127.0.0.1"], "mx.lan": addresses}

    with pytest.raises(UndeliverableDomain) as raised:
        await check_receives_mail(resolver, "lan.example")

    assert raised.value.message.startswith(
        "the mail hosts of lan.example resolve only to internal addresses"
    )
    assert "MAILROUTE_DELIVERY_ALLOWED_NETWORKS" in raised.value.message


async def test_check_receives_mail_one_public_host_is_enough(resolver: FakeResolver) -> None:
    resolver.mx_records["mixed.example"] = [MxRecord(10, "localhost"), MxRecord(20, "mx.pub")]
    resolver.address_records |= {"localhost": ["127.0.0.1"], "mx.pub": [PUBLIC_ADDRESS]}

    await check_receives_mail(resolver, "mixed.example")


async def test_check_receives_mail_allowed_network_opens_internal_hosts(
    resolver: FakeResolver,
) -> None:
    resolver.address_records["lan.example"] = ["10.1.2.3"]
    networks = DeliveryNetworks(allowed=(ipaddress.ip_network("10.0.0.0/8"),))

    await check_receives_mail(resolver, "lan.example", networks)


async def test_check_receives_mail_neither_mx_nor_address_does_not_block(
    resolver: FakeResolver,
) -> None:
    resolver.txt_records["bare.example"] = ["v=spf1 -all"]

    await check_receives_mail(resolver, "bare.example")

    assert resolver.queries == [("MX", "bare.example"), ("A", "bare.example")]


async def test_check_receives_mail_temporary_failure_does_not_block(
    resolver: FakeResolver,
) -> None:
    resolver.failing.add("flaky.example")

    await check_receives_mail(resolver, "flaky.example")

    assert resolver.queries == [("MX", "flaky.example")]


# --- create_destination -------------------------------------------------------------------


async def test_create_destination_leaves_commit_to_caller(
    session: AsyncSession, resolver: FakeResolver, identity: MailIdentity
) -> None:
    await create_destination(session, "me@inbox.example", resolver=resolver, identity=identity)
    await session.rollback()

    counts = [
        await session.scalar(select(func.count()).select_from(table))
        for table in (Destination, Message, Delivery)
    ]
    await session.rollback()

    assert counts == [0, 0, 0]


async def test_create_destination_checks_dns_before_writing(
    session: AsyncSession, identity: MailIdentity
) -> None:
    resolver = FakeResolver(mx_records={"nomail.example": [MxRecord(0, "")]})

    with pytest.raises(UndeliverableDomain):
        await create_destination(session, "me@nomail.example", resolver=resolver, identity=identity)

    assert not session.new
    assert not session.in_transaction()
