"""What app.signing.dkimpy_seams relies on in dkimpy is still there, as we use it: a signer
built from a header section and a body given apart holds what dkimpy's own parser makes of
the whole message. After a dkimpy upgrade a failure here names what moved."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dkim
import dkim.crypto
import pytest

from app.message import header_section
from app.signing import dkimpy_seams
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


@pytest.mark.parametrize("content", MESSAGES.values(), ids=MESSAGES.keys())
@pytest.mark.parametrize("build", [dkimpy_seams.dkim_signer, dkimpy_seams.arc_signer])
def test_dkimpy_seams_signer_holds_what_dkimpy_parses(content: bytes, build) -> None:
    own = dkim.DKIM(content)
    head = header_section(content)
    body = dkimpy_seams.body_of(content, head)
    assert body is not None
    ours = build(head, body)
    assert ours.body == own.body, "dkimpy's DomainSigner.body is no longer the body it hashes"
    assert ours.headers == own.headers, "dkimpy's DomainSigner.headers changed shape"


def test_dkimpy_seams_body_of_a_cut_header_section_is_none() -> None:
    content = b"From: a@b.example\r\nSubject: long\r\n\r\nbody\r\n"
    assert dkimpy_seams.body_of(content, content[:10]) is None
    assert dkimpy_seams.body_of(bytearray(content), b"From: a@b.example\r\n") is None


def test_dkimpy_seams_body_of_accepts_a_bytearray() -> None:
    content = MESSAGES["crlf"]
    assert (
        dkimpy_seams.body_of(bytearray(content), header_section(content)) == dkim.DKIM(content).body
    )
