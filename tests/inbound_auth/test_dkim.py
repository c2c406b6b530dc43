"""check_dkim and check_arc on messages signed and sealed by dkimpy, keys from dnsmasq."""

from __future__ import annotations

import time

import dkim
import pytest

from app.inbound_auth.dkim import LIFETIMES_PER_MESSAGE, MAX_SIGNATURES, check_arc, check_dkim
from app.inbound_auth.lookups import Lookups
from tests.inbound_auth.conftest import ARC_DOMAIN, DKIM_DOMAIN, SILENT_LIFETIME, Key

pytestmark = pytest.mark.dnsmasq

MESSAGE = (
    b"From: Alice <alice@dkim.auth.test>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: Signed\r\n"
    b"Date: Thu, 03 Dec 2026 12:00:00 +0000\r\n"
    b"Message-ID: <signed@dkim.auth.test>\r\n"
    b"\r\n"
    b"Signed body.\r\n\r\nWith two paragraphs.\r\n"
)


def signed(
    key: Key, selector: str = "rsa", message: bytes = MESSAGE, algorithm: bytes = b"rsa-sha256"
) -> bytes:
    signer = dkim.DKIM(message, signature_algorithm=algorithm)
    return signer.sign(selector.encode(), DKIM_DOMAIN.encode(), key.private) + message


async def test_check_dkim_valid_signature_passes(lookups: Lookups, rsa_key: Key) -> None:
    message = signed(rsa_key)
    verdict = await check_dkim(lookups, message)
    [signature] = verdict.signatures
    b_value = dkim.util.parse_tag_value(message.split(b"\r\nFrom:")[0].split(b":", 1)[1])[b"b"]
    assert (signature.result, signature.domain, signature.selector) == ("pass", DKIM_DOMAIN, "rsa")
    assert signature.header_b == b"".join(b_value.split())[:8].decode()
    assert (verdict.result, verdict.passing_domains()) == ("pass", [DKIM_DOMAIN])


async def test_check_dkim_accepts_a_bytearray(lookups: Lookups, rsa_key: Key) -> None:
    assert (await check_dkim(lookups, bytearray(signed(rsa_key)))).result == "pass"


async def test_check_dkim_ed25519_passes(lookups: Lookups, ed25519_key: Key) -> None:
    """RFC 8463: an ed25519-sha256 signature, verified with PyNaCl."""
    verdict = await check_dkim(lookups, signed(ed25519_key, "ed", algorithm=b"ed25519-sha256"))
    assert [(s.result, s.selector) for s in verdict.signatures] == [("pass", "ed")]


async def test_check_dkim_changed_body_fails(lookups: Lookups, rsa_key: Key) -> None:
    message = signed(rsa_key).replace(b"two paragraphs", b"three paragraphs")
    [signature] = (await check_dkim(lookups, message)).signatures
    assert (signature.result, signature.reason) == ("fail", "body hash mismatch")


async def test_check_dkim_changed_header_fails(lookups: Lookups, rsa_key: Key) -> None:
    message = signed(rsa_key).replace(b"Subject: Signed", b"Subject: Forged")
    [signature] = (await check_dkim(lookups, message)).signatures
    assert (signature.result, signature.reason) == ("fail", "signature did not verify")


async def test_check_dkim_unpublished_key_is_permerror(lookups: Lookups, rsa_key: Key) -> None:
    """RFC 6376 6.1.2: no key record (NXDOMAIN) is PERMFAIL."""
    [signature] = (await check_dkim(lookups, signed(rsa_key, "missing"))).signatures
    assert (signature.result, signature.selector) == ("permerror", "missing")
    assert signature.reason == "no key published"


async def test_check_dkim_unusable_key_is_permerror(lookups: Lookups, rsa_key: Key) -> None:
    [signature] = (await check_dkim(lookups, signed(rsa_key, "broken"))).signatures
    assert signature.result == "permerror"
    assert signature.reason.startswith("unusable key")


async def test_check_dkim_malformed_signature_is_permerror(lookups: Lookups) -> None:
    message = b"DKIM-Signature: v=1; a=rsa-sha256; d=dkim.auth.test; s=rsa\r\n" + MESSAGE
    [signature] = (await check_dkim(lookups, message)).signatures
    assert (signature.result, signature.domain, signature.selector) == (
        "permerror",
        DKIM_DOMAIN,
        "rsa",
    )
    assert signature.reason.startswith("malformed signature")


async def test_check_dkim_reports_every_signature(lookups: Lookups, rsa_key: Key) -> None:
    """One good and one bad signature: both, in the order they appear (RFC 6376 6.1)."""
    message = signed(rsa_key, "missing", message=signed(rsa_key))
    verdict = await check_dkim(lookups, message)
    assert [(s.result, s.selector) for s in verdict.signatures] == [
        ("permerror", "missing"),
        ("pass", "rsa"),
    ]
    assert verdict.result == "pass"


async def test_check_dkim_bounds_the_signatures_checked(lookups: Lookups, rsa_key: Key) -> None:
    message = signed(rsa_key)
    for _ in range(MAX_SIGNATURES + 2):
        message = signed(rsa_key, "missing", message=message)
    verdict = await check_dkim(lookups, message)
    assert len(verdict.signatures) == MAX_SIGNATURES


async def test_check_dkim_unparsable_header_is_one_permerror(lookups: Lookups) -> None:
    message = b"DKIM-Signature: v=1; d=dkim.auth.test; s=rsa\r\nno colon here\r\n" + MESSAGE
    [signature] = (await check_dkim(lookups, message)).signatures
    assert (signature.result, signature.domain) == ("permerror", "")
    assert signature.reason.startswith("unparsable header")


async def test_check_dkim_unsigned_is_none(lookups: Lookups) -> None:
    verdict = await check_dkim(lookups, MESSAGE)
    assert (verdict.signatures, verdict.result) == ((), "none")


async def test_check_dkim_signature_field_in_body_is_ignored(lookups: Lookups) -> None:
    message = MESSAGE + b"DKIM-Signature: v=1; d=dkim.auth.test; s=rsa\r\n"
    assert (await check_dkim(lookups, message)).signatures == ()


async def test_check_dkim_dns_timeout_is_temperror(silent_lookups: Lookups, rsa_key: Key) -> None:
    """RFC 6376 6.1.2: a key that cannot be fetched now is TEMPFAIL, not a bad signature."""
    [signature] = (await check_dkim(silent_lookups, signed(rsa_key))).signatures
    assert (signature.result, signature.domain) == ("temperror", DKIM_DOMAIN)
    assert "temporary" in signature.reason


async def test_check_dkim_key_look_ups_share_a_time_limit(
    silent_lookups: Lookups, rsa_key: Key
) -> None:
    """Eight signatures with eight selectors over a silent server: not eight lifetimes."""
    message = MESSAGE
    for index in range(MAX_SIGNATURES):
        message = signed(rsa_key, f"s{index}", message=message)
    started = time.monotonic()
    verdict = await check_dkim(silent_lookups, message)
    elapsed = time.monotonic() - started
    assert [s.result for s in verdict.signatures] == ["temperror"] * MAX_SIGNATURES
    assert MAX_SIGNATURES > LIFETIMES_PER_MESSAGE + 2
    assert elapsed < SILENT_LIFETIME * (LIFETIMES_PER_MESSAGE + 1)


def sealed(key: Key, message: bytes = MESSAGE) -> bytes:
    """``message`` as an ARC intermediary at arc.auth.test would pass it on (RFC 8617 5.1):
    its Authentication-Results, then the ARC set dkimpy seals over it."""
    results = (
        f"Authentication-Results: mx.{ARC_DOMAIN}; spf=pass smtp.mailfrom=alice@dkim.auth.test\r\n"
    )
    with_results = results.encode() + message
    arc_set = dkim.arc_sign(
        with_results, b"arc", ARC_DOMAIN.encode(), key.private, f"mx.{ARC_DOMAIN}".encode()
    )
    return b"".join(arc_set) + with_results


async def test_check_arc_valid_chain_passes(lookups: Lookups, rsa_key: Key) -> None:
    assert (await check_arc(lookups, sealed(rsa_key))).result == "pass"


async def test_check_arc_tampered_chain_fails(lookups: Lookups, rsa_key: Key) -> None:
    message = sealed(rsa_key).replace(b"two paragraphs", b"three paragraphs")
    verdict = await check_arc(lookups, bytearray(message))
    assert verdict.result == "fail"
    assert verdict.reason


async def test_check_arc_more_than_fifty_sets_fails(lookups: Lookups) -> None:
    message = b"".join(b"ARC-Seal: i=%d; cv=none\r\n" % i for i in range(1, 52)) + MESSAGE
    verdict = await check_arc(lookups, message)
    assert (verdict.result, verdict.reason) == ("fail", "more than 50 ARC sets (RFC 8617 4.2.1)")


async def test_check_arc_without_arc_fields_is_none(lookups: Lookups) -> None:
    assert (await check_arc(lookups, MESSAGE)).result == "none"


async def test_check_arc_dns_timeout_fails_and_says_why(
    silent_lookups: Lookups, rsa_key: Key
) -> None:
    verdict = await check_arc(silent_lookups, sealed(rsa_key))
    assert verdict.result == "fail"
    assert "temporarily" in verdict.reason
