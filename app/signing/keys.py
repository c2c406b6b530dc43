"""A DKIM signing key, its selector and the TXT record receivers look it up by.

RSA (RFC 6376) is what every receiver verifies; Ed25519 (RFC 8463) goes beside it as an
optional second signature. Private keys are kept in the forms dkimpy signs with: PEM for
RSA, the base64 of the 32-byte seed for Ed25519. Pure: no database, no DNS.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.errors import SigningKeyInvalid

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
RSA_BITS = 2048
# RFC 8301 3.2: verifiers must not consider signatures with keys under 1024 bits valid.
RSA_MIN_BITS = 1024
SELECTOR_PREFIX = "mr"


@dataclass(frozen=True)
class SigningKey:
    selector: str
    algorithm: Algorithm
    private_key: bytes = field(repr=False)  # never in a repr, hence never in a log line
    created_at: datetime
    retired_at: datetime | None = None

    def record(self) -> str:
        """The TXT value published at ``<selector>._domainkey.<domain>`` (RFC 6376 3.6.1)."""
        kind = "rsa" if self.algorithm == "rsa-sha256" else "ed25519"
        return f"v=DKIM1; k={kind}; p={public_key(self)}"


def public_key(key: SigningKey) -> str:
    """The record's ``p=``: base64 of the DER SubjectPublicKeyInfo for RSA, of the raw
    32-byte public key for Ed25519 (RFC 8463 4.2)."""
    if key.algorithm == "ed25519-sha256":
        seed = base64.b64decode(key.private_key)
        raw = nacl.signing.SigningKey(seed).verify_key.encode()
    else:
        private = serialization.load_pem_private_key(key.private_key, password=None)
        raw = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def dated_selector(now: datetime) -> str:
    """``mr`` and the year and month, e.g. ``mr202612``: a rotation starts a new name."""
    return f"{SELECTOR_PREFIX}{now:%Y%m}"


def generate_rsa(selector: str, now: datetime) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return SigningKey(selector, "rsa-sha256", _pkcs1_pem(private), now)


def generate_ed25519(selector: str, now: datetime) -> SigningKey:
    seed = nacl.signing.SigningKey.generate().encode()
    return SigningKey(selector, "ed25519-sha256", base64.b64encode(seed), now)


def load_pem(path: Path, selector: str | None, now: datetime) -> SigningKey:
    """The RSA key in the PEM file at ``path`` (PKCS#1 or PKCS#8, unencrypted), named
    ``selector`` or, when None, dated by the file's modification time (so that the name
    stays the same from one start to the next).

    Raises SigningKeyInvalid when it cannot be read, is no RSA key, or is too small."""
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if selector is None:
            selector = dated_selector(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    except OSError as exc:
        raise SigningKeyInvalid(f"cannot read the DKIM key file {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        # The library's message may quote the file; ours names it only.
        raise SigningKeyInvalid(
            f"{path} is not an unencrypted PEM private key (such as openssl genrsa writes)"
        ) from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise SigningKeyInvalid(f"{path} is not an RSA key (DKIM signs with RSA)")
    if private.key_size < RSA_MIN_BITS:
        raise SigningKeyInvalid(
            f"{path} is a {private.key_size}-bit RSA key; DKIM needs at least {RSA_MIN_BITS} "
            f"bits (RFC 8301), {RSA_BITS} recommended"
        )
    return SigningKey(selector, "rsa-sha256", _pkcs1_pem(private), now)


def _pkcs1_pem(private: rsa.RSAPrivateKey) -> bytes:
    # PKCS#1 ("BEGIN RSA PRIVATE KEY"): the form every version of dkimpy reads.
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
