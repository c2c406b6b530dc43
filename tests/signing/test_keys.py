"""app.signing.keys: keys made and read, and their DNS records as a verifier reads them."""

from __future__ import annotations

import base64
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from app.errors import SigningKeyInvalid
from app.signing.keys import dated_selector, generate_ed25519, generate_rsa, load_pem
from tests.peers.dkim_keys import rsa_key
from tests.peers.tools import require_tool

NOW = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)
MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"


def _signed_and_verified(key_record: str, selector: str, private_key: bytes, algo: str) -> bool:
    """Sign with dkimpy and verify against ``key_record`` served as the DNS answer."""
    signature = dkim.sign(
        MESSAGE,
        selector.encode(),
        b"example.org",
        private_key,
        signature_algorithm=algo.encode(),
        include_headers=[b"from", b"to", b"subject"],
    )

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        expected = f"{selector}._domainkey.example.org.".encode()
        return key_record.encode() if name == expected else None

    return bool(dkim.verify(signature + MESSAGE, dnsfunc=dns))


def test_dated_selector_is_mr_year_month() -> None:
    assert dated_selector(NOW) == "mr202612"
    assert dated_selector(datetime(2027, 1, 31, tzinfo=UTC)) == "mr202701"


def test_generate_rsa_record_verifies_a_signature() -> None:
    key = generate_rsa("mr202612", NOW)
    private = serialization.load_pem_private_key(key.private_key, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert key.record().startswith("v=DKIM1; k=rsa; p=")
    assert (key.selector, key.algorithm, key.created_at, key.retired_at) == (
        "mr202612",
        "rsa-sha256",
        NOW,
        None,
    )
    assert _signed_and_verified(key.record(), key.selector, key.private_key, key.algorithm)


def test_generate_rsa_record_is_the_der_public_key() -> None:
    key = generate_rsa("mr202612", NOW)
    private = serialization.load_pem_private_key(key.private_key, password=None)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key.record() == f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    _pk, keysize, _ktag, _seq = dkim.evaluate_pk(b"mr202612._domainkey.example.org", key.record())
    assert keysize == 2048


def test_generate_ed25519_record_verifies_a_signature() -> None:
    key = generate_ed25519("mr202612-ed", NOW)
    assert len(base64.b64decode(key.private_key)) == 32
    assert key.record().startswith("v=DKIM1; k=ed25519; p=")
    public = base64.b64decode(key.record().rpartition("p=")[2])
    seed = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.private_key))
    assert public == seed.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert _signed_and_verified(key.record(), key.selector, key.private_key, key.algorithm)


def test_generated_keys_differ() -> None:
    assert generate_rsa("a", NOW).record() != generate_rsa("a", NOW).record()
    assert generate_ed25519("a", NOW).record() != generate_ed25519("a", NOW).record()


def test_signing_key_repr_hides_the_private_key() -> None:
    key = generate_rsa("mr202612", NOW)
    assert "PRIVATE" not in repr(key) and "mr202612" in repr(key)


def _write_key(path: Path, private: object, fmt: serialization.PrivateFormat) -> Path:
    assert isinstance(private, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    path.write_bytes(
        private.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )
    return path


def test_load_pem_reads_an_openssl_key(tmp_path: Path) -> None:
    path = tmp_path / "dkim.pem"
    subprocess.run(
        [require_tool("openssl", "openssl"), "genpkey", "-algorithm", "RSA", "-out", str(path)],
        capture_output=True,
        check=True,
    )
    key = load_pem(path, "chosen", NOW)
    assert (key.selector, key.algorithm, key.created_at) == ("chosen", "rsa-sha256", NOW)
    assert _signed_and_verified(key.record(), key.selector, key.private_key, key.algorithm)


def test_load_pem_without_selector_is_dated_by_the_file(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = _write_key(tmp_path / "k.pem", private, serialization.PrivateFormat.PKCS8)
    modified = datetime(2025, 3, 14, tzinfo=UTC).timestamp()
    os.utime(path, (modified, modified))
    assert load_pem(path, None, NOW).selector == "mr202503"


def test_load_pem_refuses_a_small_key(tmp_path: Path) -> None:
    path = tmp_path / "small.pem"  # too small for the library to make; openssl still does
    subprocess.run(
        [require_tool("openssl", "openssl"), "genpkey", "-algorithm", "RSA"]
        + ["-pkeyopt", "rsa_keygen_bits:768", "-out", str(path)],
        capture_output=True,
        check=True,
    )
    with pytest.raises(SigningKeyInvalid, match="768-bit RSA key; DKIM needs at least 1024"):
        load_pem(path, "s", NOW)


def test_load_pem_refuses_a_non_rsa_key(tmp_path: Path) -> None:
    path = _write_key(
        tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8
    )
    with pytest.raises(SigningKeyInvalid, match="is not an RSA key"):
        load_pem(path, "s", NOW)


def test_load_pem_refuses_what_is_not_pem(tmp_path: Path) -> None:
    path = tmp_path / "junk.pem"
    path.write_text("not a key\n")
    with pytest.raises(SigningKeyInvalid, match="is not an unencrypted PEM private key"):
        load_pem(path, "s", NOW)


def test_load_pem_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyInvalid, match="cannot read the DKIM key file"):
        load_pem(tmp_path / "absent.pem", "s", NOW)


def test_load_pem_record_matches_openssls_public_key(tmp_path: Path) -> None:
    made = rsa_key(tmp_path)  # the record computed by openssl, not by us
    path = tmp_path / "key.pem"
    assert load_pem(path, "s", NOW).record() == made.record
