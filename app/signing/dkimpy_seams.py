"""dkimpy's signers built from a header section and a body hashed beforehand
(app.signing.body_hash), here and nowhere else: so that no copy of the body is made to sign
it, however many signatures and ARC sets are made from it.

``dkim.DKIM(message)`` (and ``dkim.ARC``, its subclass) splits the whole message into a
list of lines and joins the body's lines again (``rfc822_parse``); each signature then
canonicalizes that body (``canonicalize_body``: for "relaxed", three more copies) and
hashes it. For a 25 MiB message that was some 100 MiB at its peak, for a hash we compute
from the stored body in 64 KiB pieces. dkimpy's ``sign`` (DKIM and ARC alike) takes the
body hash in three steps, each of which we meet:

- the body is ``self.body``: we set it to a ``Prehashed``, an empty bytes that carries the
  body's digests;
- it is canonicalized by ``CanonicalizationPolicy.canonicalize_body``, which we wrap: a
  ``Prehashed`` comes out as the ``Digest`` of that canonicalization (any other body goes
  to dkimpy's own code, untouched: the inbound checks verify through it);
- that is fed to a hash made by ``self.hasher()``, which ``sign`` assigns: on our signers
  (and only there) ``hasher`` wraps what is assigned so that a ``Digest`` fed to it is
  its result. The header fields are hashed through the same ``hasher`` as before.

dkimpy also does its RSA in Python (``dkim.crypto.rsa_decrypt``: two modular
exponentiations by ``pow``), some 7 ms a signature on this machine, three a forwarded copy
(our DKIM signature, the ARC-Message-Signature, the ARC-Seal): a worker signed about 30
messages a second (bench/signing.py). ``dkim.RSASSA_PKCS1_v1_5_sign``, the one function
dkimpy signs through, is replaced here by the same RSASSA-PKCS1-v1_5 (RFC 8017 8.2.1, a
deterministic scheme: the same signature, byte for byte) done by the ``cryptography``
package, OpenSSL underneath.

What we rely on (TOUCHED), checked by tests/signing/test_dkimpy_seams.py against the
installed dkimpy, which names the member an upgrade changed (and signs each way, whole body
and prehashed, to the same bytes); the pin in pyproject.toml (>=1.1.8,<2) is the other half
of the fence.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import dkim
import dkim.canonicalization
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from app.message import Octets
from app.signing.body_hash import BodyDigests

# What we rely on, and why: one line each.
TOUCHED = {
    "DomainSigner.body": "set by us: a Prehashed, the body's digests",
    "DomainSigner.headers": "filled by the constructor from the header section we give",
    "DomainSigner.hasher": "assigned by sign(): on our signers, wrapped to take a Digest",
    "CanonicalizationPolicy.canonicalize_body": "wrapped: a Prehashed comes out as a Digest",
    "RSASSA_PKCS1_v1_5_sign": "replaced: (hash object, private key dict) -> signature",
}


def body_start(content: Octets, head: bytes) -> int | None:
    """Where the body of ``content`` starts, as dkimpy's parser sees it: after the empty line
    that ends ``head`` (app.message.header_section); the end for a message without one.
    None when ``head`` does not end at the empty line (a header section longer than
    header_section looks)."""
    if len(head) == len(content):
        return len(head)
    after = bytes(content[len(head) : len(head) + 2])
    if not head.endswith(b"\n") or not after.startswith((b"\n", b"\r\n")):
        return None
    return len(head) + (1 if after.startswith(b"\n") else 2)


class Prehashed(bytes):
    """A signer's ``body``: empty, carrying the digests of the real one."""

    digests: BodyDigests

    def __new__(cls, digests: BodyDigests) -> Prehashed:
        prehashed = super().__new__(cls, b"")
        prehashed.digests = digests
        return prehashed


class Digest(bytes):
    """A canonicalized ``Prehashed``: empty, carrying that canonicalization's digest."""

    digest: bytes

    def __new__(cls, digest: bytes) -> Digest:
        made = super().__new__(cls, b"")
        made.digest = digest
        return made


class _TakesDigest:
    """A hash of dkimpy's (name, update, digest, hexdigest) that a ``Digest`` fed to it
    makes that digest."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self._digest: bytes | None = None

    def update(self, data: bytes) -> None:
        if isinstance(data, Digest):
            if self.name.lower() != "sha256":
                raise dkim.ParameterError(f"the body was hashed with sha256, not {self.name}")
            self._digest = data.digest
        else:
            self.inner.update(data)

    def digest(self) -> bytes:
        return self._digest if self._digest is not None else bytes(self.inner.digest())

    def hexdigest(self) -> str:
        return self.digest().hex()


class _PrehashedSigner:
    """Mixed into our dkimpy signers: ``sign`` assigns ``self.hasher``; ours wraps it."""

    _hasher: Callable[[], Any]

    @property
    def hasher(self) -> Callable[[], Any]:
        return self._hasher

    @hasher.setter
    def hasher(self, make: Callable[[], Any]) -> None:
        self._hasher = lambda: _TakesDigest(make())


class _DKIM(_PrehashedSigner, dkim.DKIM):  # type: ignore[misc]
    pass


class _ARC(_PrehashedSigner, dkim.ARC):  # type: ignore[misc]
    pass


def dkim_signer(head: bytes, digests: BodyDigests) -> Any:
    """A ``dkim.DKIM`` for the message ``head`` + empty line + the body of ``digests``."""
    signer = _DKIM(head, linesep=b"\r\n")
    signer.body = Prehashed(digests)
    return signer


def arc_signer(head: bytes, digests: BodyDigests) -> Any:
    """A ``dkim.ARC`` for the message ``head`` + empty line + the body of ``digests``; its
    ``sign`` is what ``dkim.arc_sign`` calls (which always signs with rsa-sha256)."""
    signer = _ARC(head, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
    signer.body = Prehashed(digests)
    return signer


_canonicalize_body = dkim.canonicalization.CanonicalizationPolicy.canonicalize_body


def canonicalize_body(policy: Any, body: bytes) -> bytes:
    """dkimpy's ``CanonicalizationPolicy.canonicalize_body``, which a ``Prehashed`` passes
    as the ``Digest`` of the policy's body canonicalization."""
    if isinstance(body, Prehashed):
        return Digest(body.digests[policy.body_algorithm.name])
    result: bytes = _canonicalize_body(policy, body)
    return result


dkim.canonicalization.CanonicalizationPolicy.canonicalize_body = canonicalize_body


_HASHES: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}


@lru_cache(maxsize=8)
def _private_key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey:
    """The ``cryptography`` key for dkimpy's parsed one (the active keys: a handful)."""
    n, e, d, p, q, dmp1, dmq1, iqmp = numbers
    public = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, public).private_key()


def rsa_sign(hash: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's RSASSA_PKCS1_v1_5_sign (``hash``: a hash object with ``name`` and
    ``digest()``; ``private_key``: dkimpy's dict of the key's numbers), by OpenSSL."""
    key = _private_key(
        tuple(
            private_key[name]
            for name in (
                "modulus",
                "publicExponent",
                "privateExponent",
                "prime1",
                "prime2",
                "exponent1",
                "exponent2",
                "coefficient",
            )
        )
    )
    algorithm = _HASHES[hash.name.lower()]
    signature: bytes = key.sign(hash.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))
    return signature


dkim.RSASSA_PKCS1_v1_5_sign = rsa_sign
