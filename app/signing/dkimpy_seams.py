"""dkimpy's signers built from a header section and a body given apart, here and nowhere
else: so that one copy of the body serves every signature and the ARC set.

``dkim.DKIM(message)`` (and ``dkim.ARC``, its subclass) splits the whole message into a
list of lines, then joins the body's lines again (``rfc822_parse``): for a 25 MiB message,
a list of some 300,000 objects and a 25 MiB body, made once for DKIM and once more for the
ARC set, on top of the copy with our DKIM-Signature fields that ``dkim.arc_sign`` needs.
dkimpy signs from two attributes that ``set_message`` fills: ``headers`` (``[name,
value]`` pairs, the value with its CRLF) and ``body`` (bytes, CRLF line ends). So we give
the constructor the header section alone and set ``body`` to the bytes dkimpy would have
made: the content after the empty line, with each bare LF made CRLF as its split on
``\\r?\\n`` and join on CRLF do.

dkimpy also does its RSA in Python (``dkim.crypto.rsa_decrypt``: two modular
exponentiations by ``pow``), some 7 ms a signature on this machine, three a forwarded copy
(our DKIM signature, the ARC-Message-Signature, the ARC-Seal): a worker signed about 30
messages a second (bench/signing.py). ``dkim.RSASSA_PKCS1_v1_5_sign``, the one function
dkimpy signs through, is replaced here by the same RSASSA-PKCS1-v1_5 (RFC 8017 8.2.1, a
deterministic scheme: the same signature, byte for byte) done by the ``cryptography``
package, OpenSSL underneath.

What we rely on (TOUCHED), checked by tests/signing/test_dkimpy_seams.py against the
installed dkimpy, which names the member an upgrade changed; the pin in pyproject.toml
(>=1.1.8,<2) is the other half of the fence.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

# What we rely on, and why: one line each.
TOUCHED = {
    "DomainSigner.body": "set by us: the body the signatures hash, CRLF line ends",
    "DomainSigner.headers": "filled by the constructor from the header section we give",
    "RSASSA_PKCS1_v1_5_sign": "replaced: (hash object, private key dict) -> signature",
}

_BARE_LF = re.compile(rb"(?<!\r)\n")


def body_of(content: bytes | bytearray, head: bytes) -> bytes | None:
    """The body as dkimpy's parser makes it from ``content``, whose header section is
    ``head`` (app.message.header_section): what follows the empty line, each bare LF made
    CRLF; b"" without an empty line. None when ``head`` does not end at the empty line
    (a header section longer than header_section looks)."""
    if len(head) == len(content):
        return b""
    after = bytes(content[len(head) : len(head) + 2])
    if not head.endswith(b"\n") or not after.startswith((b"\n", b"\r\n")):
        return None
    skip = 1 if after.startswith(b"\n") else 2
    body = bytes(memoryview(content)[len(head) + skip :])
    if body.count(b"\n") != body.count(b"\r\n"):
        body = _BARE_LF.sub(b"\r\n", body)
    return body


def dkim_signer(head: bytes, body: bytes) -> Any:
    """A ``dkim.DKIM`` for the message ``head`` + empty line + ``body``."""
    signer = dkim.DKIM(head, linesep=b"\r\n")
    signer.body = body
    return signer


def arc_signer(head: bytes, body: bytes) -> Any:
    """A ``dkim.ARC`` for the message ``head`` + empty line + ``body``; its ``sign`` is
    what ``dkim.arc_sign`` calls (which always signs with rsa-sha256)."""
    signer = dkim.ARC(head, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
    signer.body = body
    return signer


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
