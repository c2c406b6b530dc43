"""Signer.fields against independent verifiers: dkimpy's verify and arc_verify, and a real
rspamd (its dkim and arc modules), every key looked up in a real DNS server (dnsmasq)."""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

import dkim
import pytest

from app.errors import SigningError
from app.inbound_auth.headers import authentication_results
from app.inbound_auth.verdicts import Arc, Dkim, DkimSignature, Dmarc, Spf, Verdicts
from app.message import field_names, received_header
from app.signing.sign import Signer, covered_fields
from tests.peers import rspamd
from tests.signing.conftest import (
    AUTHSERV_ID,
    OUR_DOMAIN,
    SENDER_DOMAIN,
    UPSTREAM_DOMAIN,
    Keys,
    SigningKey,
)

pytestmark = pytest.mark.dnsmasq

DnsFunc = Callable[..., bytes | None]

SENT = (
    f"From: Alice <alice@{SENDER_DOMAIN}>\r\n"
    "To: shop@example.org\r\n"
    "Subject: lunch on thursday\r\n"
    "Date: Thu, 03 Dec 2026 18:00:00 +0000\r\n"
    f"Message-ID: <lunch-1@{SENDER_DOMAIN}>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Shall we meet at noon at the usual place?\r\n"
    "\r\n"
).encode()
SENDER_COVERS = [b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe-post"]


def sent_by_sender(keys: Keys, message: bytes = SENT) -> bytes:
    """The message as the sender's server signs it (d=sender.sign.test)."""
    signature = dkim.sign(
        message, b"s1", SENDER_DOMAIN.encode(), keys.sender.private, include_headers=SENDER_COVERS
    )
    return signature + message


def sealed_upstream(keys: Keys, message: bytes) -> bytes:
    """``message`` as another forwarder passes it on: its A-R, then its ARC set (i=1)."""
    results = (
        f"Authentication-Results: mx.{UPSTREAM_DOMAIN}; dkim=pass header.d={SENDER_DOMAIN}\r\n"
    )
    with_results = results.encode() + message
    arc_set = dkim.arc_sign(
        with_results,
        b"arc",
        UPSTREAM_DOMAIN.encode(),
        keys.upstream.private,
        f"mx.{UPSTREAM_DOMAIN}".encode(),
    )
    return b"".join(arc_set) + with_results


def stored(sent: bytes, *, arc: str | None = "none") -> bytes:
    """``sent`` as we store it: our Received, our Authentication-Results (none when the
    checks are off: ``arc`` None), then the sender's exact bytes."""
    received = received_header(
        helo="mail.sender.sign.test",
        client_ip="127.0.0.1",
        hostname=AUTHSERV_ID,
        protocol="ESMTPS",
        queue_id="q-0001",
        recipient="shop@example.org",
        now=datetime(2026, 12, 3, 18, 0, tzinfo=UTC),
    )
    if arc is None:
        return received + sent
    verdicts = Verdicts(
        spf=Spf("pass", SENDER_DOMAIN),
        dkim=Dkim((DkimSignature("pass", SENDER_DOMAIN, "s1"),)),
        dmarc=Dmarc("pass", SENDER_DOMAIN, "none"),
        arc=Arc(arc),
    )
    results = authentication_results(AUTHSERV_ID, verdicts, mail_from=f"alice@{SENDER_DOMAIN}")
    return received + results + sent


def signer(keys: Keys, *, ed25519: bool = True, dkim_sign: bool = True) -> Signer:
    ours = [SigningKey("mr202612", "rsa-sha256", keys.ours_rsa.private)]
    if ed25519:
        ours.append(SigningKey("mr202612e", "ed25519-sha256", keys.ours_ed25519.private))
    return Signer(OUR_DOMAIN, AUTHSERV_ID, ours, dkim=dkim_sign)


def signature_index(message: bytes, domain: str, algorithm: str = "rsa-sha256") -> int:
    """Which DKIM-Signature (0: topmost) has d=``domain`` and a=``algorithm``."""
    signatures = [
        value for name, value in dkim.DKIM(message).headers if name.lower() == b"dkim-signature"
    ]
    for index, value in enumerate(signatures):
        unfolded = b"".join(value.split())
        if f"d={domain};".encode() in unfolded and f"a={algorithm};".encode() in unfolded:
            return index
    raise AssertionError(f"no {algorithm} signature of {domain}")


def verifies(message: bytes, index: int, dnsfunc: DnsFunc) -> bool:
    return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dnsfunc))


def arc_seal(message: bytes, instance: int) -> bytes:
    for name, value in dkim.DKIM(message).headers:
        unfolded = b"".join(value.split())
        if name.lower() == b"arc-seal" and unfolded.startswith(b"i=%d;" % instance):
            return unfolded
    raise AssertionError(f"no ARC-Seal i={instance}")


# dkimpy.


def test_sign_fields_prepend_arc_then_dkim_and_keep_the_message(keys: Keys) -> None:
    message = stored(sent_by_sender(keys))
    prepended = signer(keys).fields(message)
    assert prepended.endswith(b"\r\n")
    assert b"\n" not in prepended.replace(b"\r\n", b"")
    names = field_names(prepended + message)
    assert names[:7] == [
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "dkim-signature",
        "dkim-signature",
        "received",
        "authentication-results",
    ]
    assert len(field_names(prepended)) == 5


def test_sign_our_dkim_signature_verifies(keys: Keys, dnsfunc: DnsFunc) -> None:
    message = signer(keys).fields(stored(sent_by_sender(keys))) + stored(sent_by_sender(keys))
    assert signature_index(message, OUR_DOMAIN) == 0
    assert dkim.verify(message, dnsfunc=dnsfunc)
    tampered = message.replace(b"usual place", b"other place")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)


def test_sign_ed25519_signature_verifies(keys: Keys, dnsfunc: DnsFunc) -> None:
    original = stored(sent_by_sender(keys))
    message = signer(keys).fields(original) + original
    index = signature_index(message, OUR_DOMAIN, "ed25519-sha256")
    assert index == 1
    assert verifies(message, index, dnsfunc)
    assert not verifies(message.replace(b"lunch on", b"dinner on"), index, dnsfunc)


def test_sign_senders_signature_still_verifies(keys: Keys, dnsfunc: DnsFunc) -> None:
    sent = sent_by_sender(keys)
    message = signer(keys).fields(stored(sent)) + stored(sent)
    assert message.endswith(sent)
    assert verifies(message, signature_index(message, SENDER_DOMAIN), dnsfunc)


def test_sign_covers_what_the_sender_covered_and_never_received(keys: Keys) -> None:
    message = stored(sent_by_sender(keys))
    prepended = signer(keys).fields(message)
    h = re.search(rb"h=([^;]*);", b"".join(prepended.split(b"DKIM-Signature:")[1].split()))
    assert h is not None
    covered = h.group(1).split(b":")
    assert set(SENDER_COVERS) <= set(covered)
    assert covered.count(b"from") == 2  # From once more than it occurs (RFC 6376 8.15)
    assert b"received" not in covered
    assert b"authentication-results" not in covered


def test_sign_covered_fields_skip_what_must_not_be_signed() -> None:
    names = [b"Received", b"Authentication-Results", b"From", b"X-Custom", b"X-Other", b"To"]
    covered = covered_fields(names, {b"x-custom", b"received", b"authentication-results"})
    assert covered == [b"from", b"x-custom", b"to", b"from"]


def test_sign_first_hop_seal_has_instance_one_and_cv_none(keys: Keys, dnsfunc: DnsFunc) -> None:
    original = stored(sent_by_sender(keys))
    message = signer(keys).fields(original) + original
    assert arc_seal(message, 1).startswith(b"i=1;cv=none;")
    cv, _results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, reason


def test_sign_aar_carries_our_results(keys: Keys) -> None:
    prepended = signer(keys).fields(stored(sent_by_sender(keys)))
    aar = prepended.split(b"ARC-Authentication-Results:")[1].split(b"DKIM-Signature:")[0]
    assert b"i=1; " + AUTHSERV_ID.encode() + b";" in aar
    assert f"dkim=pass header.d={SENDER_DOMAIN}".encode() in aar


def test_sign_continues_a_passing_chain_with_instance_two(keys: Keys, dnsfunc: DnsFunc) -> None:
    arrived = sealed_upstream(keys, sent_by_sender(keys))
    cv, _results, _reason = dkim.arc_verify(arrived, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass  # what our checks found: arc=pass
    original = stored(arrived, arc="pass")
    message = signer(keys).fields(original) + original
    assert arc_seal(message, 2).startswith(b"i=2;cv=pass;")
    cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, reason
    assert [r["instance"] for r in results] == [2, 1]
    assert dkim.verify(message, dnsfunc=dnsfunc)


def test_sign_broken_incoming_chain_leaves_with_cv_fail(keys: Keys, dnsfunc: DnsFunc) -> None:
    # Changed after the upstream seal: its ARC-Message-Signature no longer verifies.
    arrived = sealed_upstream(keys, sent_by_sender(keys)).replace(b"noon", b"one")
    cv, _results, _reason = dkim.arc_verify(arrived, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Fail  # what our checks found: arc=fail
    original = stored(arrived, arc="fail")
    message = signer(keys).fields(original) + original
    assert arc_seal(message, 2).startswith(b"i=2;cv=fail;")
    assert dkim.verify(message, dnsfunc=dnsfunc)


def test_sign_chain_that_cannot_be_continued_is_dkim_only(
    keys: Keys, dnsfunc: DnsFunc, caplog: pytest.LogCaptureFixture
) -> None:
    # arc=fail for ARC fields that carry no instance dkimpy can number: no i=1 with
    # cv=fail (RFC 8617 5.1.1 knows none), and the copy keeps our DKIM signature.
    original = stored(b"ARC-Seal: garbage\r\n" + sent_by_sender(keys), arc="fail")
    prepended = signer(keys).fields(original)
    assert field_names(prepended) == ["dkim-signature", "dkim-signature"]
    assert dkim.verify(prepended + original, dnsfunc=dnsfunc)
    assert "no ARC set" in caplog.text


def test_sign_without_our_results_is_dkim_only(keys: Keys, dnsfunc: DnsFunc) -> None:
    original = stored(sent_by_sender(keys), arc=None)
    prepended = signer(keys).fields(original)
    assert field_names(prepended) == ["dkim-signature", "dkim-signature"]
    assert dkim.verify(prepended + original, dnsfunc=dnsfunc)


def test_sign_ignores_results_the_sender_wrote_with_our_id(keys: Keys, dnsfunc: DnsFunc) -> None:
    forged = f"Authentication-Results: {AUTHSERV_ID}; dkim=pass header.d=bank.example\r\n"
    sent = sent_by_sender(keys, forged.encode() + SENT)
    # With the checks off, the forged field is the one below our Received: no seal.
    assert field_names(signer(keys).fields(stored(sent, arc=None))) == ["dkim-signature"] * 2
    original = stored(sent)
    message = signer(keys).fields(original) + original
    aar = message.split(b"ARC-Authentication-Results:")[1].split(b"DKIM-Signature:")[0]
    assert b"bank.example" not in aar
    cv, _results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, reason


def test_sign_dkim_off_gives_the_arc_set_only(keys: Keys, dnsfunc: DnsFunc) -> None:
    original = stored(sent_by_sender(keys))
    prepended = signer(keys, dkim_sign=False).fields(original)
    assert field_names(prepended) == [
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
    ]
    cv, _results, reason = dkim.arc_verify(prepended + original, dnsfunc=dnsfunc)
    assert cv == dkim.CV_Pass, reason


def test_sign_accepts_a_bytearray(keys: Keys, dnsfunc: DnsFunc) -> None:
    original = stored(sent_by_sender(keys))
    message = signer(keys).fields(bytearray(original)) + original
    assert dkim.verify(message, dnsfunc=dnsfunc)


# Keys that cannot be used.


@pytest.mark.parametrize(
    "ours",
    [
        [SigningKey("bad", "rsa-sha256", b"-----BEGIN RSA PRIVATE KEY-----\nnot a key\n")],
        [SigningKey("none", "ed25519-sha256", b"")],
        [],
    ],
    ids=["garbage-rsa", "no-rsa", "no-key"],
)
def test_sign_unusable_keys_raise_signing_error(ours: list[SigningKey]) -> None:
    with pytest.raises(SigningError):
        Signer(OUR_DOMAIN, AUTHSERV_ID, ours)


def test_sign_unusable_ed25519_key_raises_without_showing_it(keys: Keys) -> None:
    secret = b"c2VjcmV0LXNlZWQ="
    ours = [
        SigningKey("mr202612", "rsa-sha256", keys.ours_rsa.private),
        SigningKey("mr202612e", "ed25519-sha256", secret),
    ]
    with pytest.raises(SigningError, match="mr202612e") as raised:
        Signer(OUR_DOMAIN, AUTHSERV_ID, ours)
    assert secret.decode() not in str(raised.value)


def test_sign_short_rsa_key_raises_signing_error(tmp_path) -> None:
    import subprocess

    path = tmp_path / "short.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(path), "512"],
        check=True,
        capture_output=True,
    )
    with pytest.raises(SigningError, match="cannot be used"):
        Signer(OUR_DOMAIN, AUTHSERV_ID, [SigningKey("short", "rsa-sha256", path.read_bytes())])


def test_sign_unparsable_message_raises_signing_error(keys: Keys) -> None:
    with pytest.raises(SigningError, match="MessageFormatError"):
        signer(keys).fields(b"From: a@b.example\r\n\x01 not a field\r\n\r\nbody\r\n")


# Memory.


def test_sign_peak_memory_for_a_25_mib_message(
    keys: Keys, dnsfunc: DnsFunc, record_property: Callable[[str, object], None]
) -> None:
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    body = line * (25 * 1024 * 1024 // len(line))
    original = stored(sent_by_sender(keys, SENT + body))
    size = len(original)
    chosen = signer(keys)
    tracemalloc.start()
    try:
        prepended = chosen.fields(original)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record_property("peak_mib", round(peak / 2**20, 1))
    record_property("message_mib", round(size / 2**20, 1))
    # The content itself is not counted (made before the start); the body is hashed in
    # pieces, never copied whole: what is left is the header section and a few pieces.
    assert peak < size / 10
    assert dkim.verify(prepended + original, dnsfunc=dnsfunc)


# rspamd, a second verifier.


def test_sign_rspamd_allows_both_signatures_and_the_chain(keys: Keys, signing_rspamd: str) -> None:
    arrived = sealed_upstream(keys, sent_by_sender(keys))
    original = stored(arrived, arc="pass")
    message = signer(keys).fields(original) + original
    symbols = rspamd.symbols(
        signing_rspamd, message, sender=f"alice@{SENDER_DOMAIN}", rcpt="me@inbox.example"
    )
    assert "ARC_ALLOW" in symbols, sorted(symbols)
    assert "R_DKIM_ALLOW" in symbols, json.dumps({k: v.get("options") for k, v in symbols.items()})
    assert set(symbols["R_DKIM_ALLOW"]["options"]) == {
        f"{OUR_DOMAIN}:s=mr202612",
        f"{OUR_DOMAIN}:s=mr202612e",
        f"{SENDER_DOMAIN}:s=s1",
    }
    assert symbols["ARC_ALLOW"]["options"] == [f"{OUR_DOMAIN}:s=mr202612:i=2"]
    assert "R_DKIM_REJECT" not in symbols
