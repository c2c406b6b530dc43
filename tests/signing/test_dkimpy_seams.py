"""What app.signing.dkimpy_seams relies on in dkimpy is still there, as we use it: a signer
built from a header section and a body given apart holds what dkimpy's own parser makes of
the whole message. After a dkimpy upgrade a failure here names what moved."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import dkim
import dkim.crypto
import pytest

from app.message import header_section
from app.signing import dkimpy_seams
from app.signing.body_hash import BodyDigests, body_digests
from tests.peers.dkim_keys import rsa_key

MESSAGES = {
    "crlf": b"From: a@b.example\r\nSubject: one\r\n two\r\n\r\nline 1\r\n\r\nline 2\r\n\r\n\r\n",
    "bare-lf-in-body": b"From: a@b.example\r\n\r\nline 1\nline 2\r\nline 3\n",
    "lf-only": b"From: a@b.example\nTo: c@d.example\n\nbody\n",
    "empty-body": b"From: a@b.example\r\n\r\n",
    "no-empty-line": b"From: a@b.example\r\nTo: c@d.example\r\n",
    "bare-cr": b"From: a@b.example\r\n\r\na\rb\r\n",
}


def test_dkimpy_seams_every_member_is_checked() -> None:
    assert set(dkimpy_seams.TOUCHED) == {
        "DomainSigner.body",
        "DomainSigner.headers",
        "DomainSigner.hasher",
        "CanonicalizationPolicy.canonicalize_body",
        "RSASSA_PKCS1_v1_5_sign",
    }


@pytest.mark.parametrize("algorithm", ["sha256", "sha1"])
def test_dkimpy_seams_rsa_sign_is_dkimpys_signature_byte_for_byte(
    tmp_path: Path, algorithm: str
) -> None:
    # RSASSA-PKCS1-v1_5 is deterministic: OpenSSL must give exactly dkimpy's bytes.
    key = dkim.crypto.parse_pem_private_key(rsa_key(tmp_path).private)
    digest = hashlib.new(algorithm, b"the header hash")
    ours = dkimpy_seams.rsa_sign(digest, key)
    assert ours == dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest, key)
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkimpy_seams.rsa_sign  # what dkimpy signs through
    # ... the name dkimpy's signing looks up when it signs.
    assert "RSASSA_PKCS1_v1_5_sign" in dkim.DomainSigner.gen_header.__code__.co_names


def body_digests_of(content: bytes) -> BodyDigests:
    head = header_section(content)
    start = dkimpy_seams.body_start(content, head)
    assert start is not None
    return body_digests(content[start:])


@pytest.mark.parametrize("content", MESSAGES.values(), ids=MESSAGES.keys())
@pytest.mark.parametrize("build", [dkimpy_seams.dkim_signer, dkimpy_seams.arc_signer])
def test_dkimpy_seams_signer_holds_the_headers_dkimpy_parses(content: bytes, build) -> None:
    ours = build(header_section(content), body_digests_of(content))
    assert ours.headers == dkim.DKIM(content).headers, "dkimpy's DomainSigner.headers changed"


@pytest.mark.parametrize("content", MESSAGES.values(), ids=MESSAGES.keys())
@pytest.mark.parametrize("canonicalize", [(b"relaxed", b"simple"), (b"simple", b"relaxed")])
def test_dkimpy_seams_prehashed_dkim_signature_is_dkimpys_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, canonicalize
) -> None:
    # Same key, same time, same body: the signature from the digests must be the one
    # dkimpy makes from the whole message (RSA signatures are deterministic).
    monkeypatch.setattr(time, "time", lambda: 1796320800)
    key = rsa_key(tmp_path).private
    args = (b"s1", b"sign.test", key)
    kwargs = {"canonicalize": canonicalize, "include_headers": [b"from"]}
    whole = dkim.DKIM(content, linesep=b"\r\n").sign(*args, **kwargs)
    ours = dkimpy_seams.dkim_signer(header_section(content), body_digests_of(content))
    assert ours.sign(*args, **kwargs) == whole


@pytest.mark.parametrize("content", MESSAGES.values(), ids=MESSAGES.keys())
def test_dkimpy_seams_prehashed_arc_set_is_dkimpys_byte_for_byte(
    tmp_path: Path, content: bytes
) -> None:
    results = b"Authentication-Results: mx.sign.test; spf=pass smtp.mailfrom=b.example\r\n"
    content = results + content
    key = rsa_key(tmp_path).private
    args = (b"arc", b"sign.test", key, b"mx.sign.test")
    kwargs = {"include_headers": [b"from"], "timestamp": 1796320800}
    whole = dkim.ARC(content, linesep=b"\r\n").sign(*args, **kwargs)
    ours = dkimpy_seams.arc_signer(header_section(content), body_digests_of(content))
    assert ours.sign(*args, **kwargs) == whole


def test_dkimpy_seams_leave_dkimpys_own_signing_and_verifying_alone(tmp_path: Path) -> None:
    # The wrap of canonicalize_body passes any real body to dkimpy's code, and dkimpy's own
    # signers (the inbound checks verify with them) hash what they are given.
    policy = dkim.canonicalization.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    assert policy.canonicalize_body(b"a  b \r\n\r\n") == b"a b\r\n"
    key = rsa_key(tmp_path)
    content = MESSAGES["crlf"]
    signed = dkim.sign(content, b"s1", b"sign.test", key.private) + content
    record = key.record.encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    assert not dkim.verify(
        signed.replace(b"line 2", b"line 3"), dnsfunc=lambda n, timeout=5: record
    )


def test_dkimpy_seams_body_start_of_a_cut_header_section_is_none() -> None:
    content = b"From: a@b.example\r\nSubject: long\r\n\r\nbody\r\n"
    assert dkimpy_seams.body_start(content, content[:10]) is None
    assert dkimpy_seams.body_start(bytearray(content), b"From: a@b.example\r\n") is None


@pytest.mark.parametrize("content", MESSAGES.values(), ids=MESSAGES.keys())
def test_dkimpy_seams_body_start_is_where_dkimpys_body_starts(content: bytes) -> None:
    start = dkimpy_seams.body_start(bytearray(content), header_section(content))
    assert start is not None
    assert b"\r\n".join(re.split(b"\r?\n", content[start:])) == dkim.DKIM(content).body
