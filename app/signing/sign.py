"""Our DKIM signature (RFC 6376; Ed25519 as a second one, RFC 8463) and our ARC set
(RFC 8617) on a forwarded copy, made by dkimpy. Pure CPU: no DNS, no database.

What :meth:`Signer.fields` returns goes above the stored message, which starts with our
Received: field, our Authentication-Results (with the checks on), then the sender's exact
bytes; nothing of it is changed. Top to bottom::

    ARC-Seal                    i = one above the highest instance that arrived
    ARC-Message-Signature       RFC 8617 4.1: the ARC set is prepended, on top
    ARC-Authentication-Results  our Authentication-Results, as dkimpy copies it
    DKIM-Signature              RSA (rsa-sha256)
    DKIM-Signature              Ed25519 (ed25519-sha256), when that key is given

The DKIM signatures are made first, so the ARC set seals a message that carries them.

Which header fields our DKIM signature (and the ARC-Message-Signature) cover: RFC 6376
5.4.1's list (dkimpy's ``DKIM.SHOULD``) plus every name the sender's own DKIM-Signature
fields list in h=, each as many times as it occurs (all instances signed), and From once
more, so that no second From can be added (RFC 6376 8.15). Never covered:

- Received, Return-Path and the others of RFC 6376 5.4.1's "SHOULD NOT" list;
- Authentication-Results: receivers may delete them (RFC 8601 5), which would break our
  signature, and h= names a field, not an instance: one ``authentication-results`` in h=
  signs the bottommost one, which may be a field the sender wrote. Our results travel in
  the ARC-Authentication-Results, which the ARC-Seal covers.

ARC, and which Authentication-Results is ours: dkimpy's ``ARC.sign`` (read in dkimpy 1.1.8)
takes cv from the ``arc=`` result of the Authentication-Results fields whose authserv-id
is the one it is given, copies their results into the ARC-Authentication-Results, and
looks nothing up in DNS. But it takes every such field, and a sender can write one with
our authserv-id into its message. So only the field directly below our Received: counts
as ours, and dkimpy is shown the message without any other Authentication-Results field
(none is covered by the ARC-Message-Signature or the ARC-Seal, so the seal is the same for
the message as it leaves). Without an Authentication-Results of ours (the checks off, or
``authserv_id`` None) there is no ARC set, only our DKIM signature: a seal vouches for
results we would not have, and dkimpy itself ends the chain there ("no AR headers
found"). A chain dkimpy cannot continue (an arc=fail with no instance it can number, more
than 50 sets) also gets no ARC set, and the message keeps our DKIM signature.

Memory: dkimpy takes the message as ``bytes``, splits all of it into lines, and copies the
body to canonicalize it, for each signature and the ARC set. Our signers are built from
the header section and the body's digests, computed once from the stored content in 64 KiB
pieces (app.signing.body_hash, app.signing.dkimpy_seams): only the header section is copied.
tests/signing/test_sign.py bounds the peak for a 25 MiB message.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dkim
import dkim.crypto
import nacl.encoding
import nacl.exceptions
import nacl.signing
from dkim.util import InvalidTagValueList, parse_tag_value

from app.errors import SigningError
from app.message import Octets, header_section
from app.signing import dkimpy_seams
from app.signing.body_hash import BodyDigests, body_digests

log = logging.getLogger(__name__)

RSA_SHA256 = "rsa-sha256"
ED25519_SHA256 = "ed25519-sha256"
CANONICALIZATION = (b"relaxed", b"simple")  # the DKIM default of most signers
MAX_SENDER_SIGNATURES = 8  # the sender's DKIM-Signature fields whose h= we read
MAX_FIELD_NAME = 64
# Never in our h=: RFC 6376 5.4.1, and Authentication-Results (see the module's text).
NOT_COVERED = frozenset(dkim.DKIM.SHOULD_NOT) | {b"authentication-results"}
ALWAYS_COVERED = frozenset(dkim.DKIM.SHOULD)

_FIELD = re.compile(rb"^(?P<name>[!-9;-~]+)[ \t]*:(?P<value>[^\n]*\n(?:[ \t][^\n]*\n)*)", re.M)
_VALID_NAME = re.compile(rb"[!-9;-~]{1,%d}" % MAX_FIELD_NAME)


class SigningKey(Protocol):
    """What a key of app.signing.keys gives us."""

    @property
    def selector(self) -> str: ...
    @property
    def algorithm(self) -> str: ...  # "rsa-sha256" or "ed25519-sha256"
    @property
    def private_key(self) -> bytes: ...  # PEM for RSA, base64 seed for Ed25519


@dataclass(frozen=True)
class Signer:
    """Signs forwarded copies. ``keys``: one RSA key (DKIM and ARC: RFC 8617 knows only
    rsa-sha256) and optionally one Ed25519 key (a second DKIM signature)."""

    domain: str  # d= of our signatures
    authserv_id: str | None  # MAILROUTE_HOSTNAME, ours in Authentication-Results; None: no ARC
    keys: Sequence[SigningKey]
    dkim: bool = True  # MAILROUTE_DKIM_SIGN

    def __post_init__(self) -> None:
        algorithms = [key.algorithm for key in self.keys]
        if sorted(algorithms) not in ([RSA_SHA256], [ED25519_SHA256, RSA_SHA256]):
            raise SigningError(
                f"signing needs one {RSA_SHA256} key and at most one {ED25519_SHA256} key,"
                f" not {algorithms}"
            )
        for key in self.keys:
            _check_key(key)

    @property
    def rsa(self) -> SigningKey:
        return next(key for key in self.keys if key.algorithm == RSA_SHA256)

    def fields(self, content: Octets) -> bytes:
        """The header fields to prepend to ``content`` (CRLF, folded); raises SigningError."""
        head = header_section(content)
        fields = list(_FIELD.finditer(head))
        covered = covered_fields([m.group("name") for m in fields], _sender_covered(fields))
        # A header section longer than header_section looks (MAX_HEADER_SCAN) is signed the
        # slow way, and not sealed: a forged Authentication-Results could hide past it.
        start = dkimpy_seams.body_start(content, head)
        body = None if start is None else body_digests(memoryview(content)[start:])
        signatures = self._dkim_signatures(content, head, body, covered) if self.dkim else b""
        if body is None or self.authserv_id is None or not _ours(fields, self.authserv_id):
            return signatures
        return self._arc_set(_without_foreign_results(head, fields), body, covered, signatures)

    def _dkim_signatures(
        self, content: Octets, head: bytes, body: BodyDigests | None, covered: list[bytes]
    ) -> bytes:
        keys = sorted(self.keys, key=lambda key: key.algorithm != RSA_SHA256)  # RSA first
        try:
            if body is None:
                signer = dkim.DKIM(bytes(content), linesep=b"\r\n")
            else:
                signer = dkimpy_seams.dkim_signer(head, body)
            return b"".join(
                signer.sign(
                    key.selector.encode(),
                    self.domain.encode(),
                    key.private_key,
                    signature_algorithm=key.algorithm.encode(),
                    canonicalize=CANONICALIZATION,
                    include_headers=covered,
                )
                for key in keys
            )
        except dkim.DKIMException as exc:
            raise SigningError(f"dkimpy could not sign: {type(exc).__name__}") from exc

    def _arc_set(
        self, head: bytes, body: BodyDigests, covered: list[bytes], signatures: bytes
    ) -> bytes:
        """The ARC set over ``signatures`` + ``head`` + ``body``, as ``dkim.arc_sign`` makes it."""
        assert self.authserv_id is not None
        try:
            sealer = dkimpy_seams.arc_signer(signatures + head, body)
            arc_set: list[bytes] = sealer.sign(
                self.rsa.selector.encode(),
                self.domain.encode(),
                self.rsa.private_key,
                self.authserv_id.encode(),
                include_headers=covered,
            )
        except dkim.ParameterError as exc:
            # The chain as it arrived cannot be continued (RFC 8617 5.1.2): no seal.
            log.warning("no ARC set on this copy: %s", exc)
            return signatures
        except dkim.DKIMException as exc:
            raise SigningError(f"dkimpy could not seal: {type(exc).__name__}") from exc
        return b"".join(arc_set) + signatures


def _without_foreign_results(head: bytes, fields: list[re.Match[bytes]]) -> bytes:
    """``head`` without the Authentication-Results fields that are not ours (every one but
    the second field)."""
    pieces: list[bytes] = []
    start = 0
    for match in fields[2:]:
        if _is_results(match.group("name")):
            pieces.append(head[start : match.start()])
            start = match.end()
    pieces.append(head[start:])
    return b"".join(pieces)


def covered_fields(names: list[bytes], sender_covered: set[bytes]) -> list[bytes]:
    """h= of our signatures, from the names of the header fields in order: one entry per
    instance of each covered field, and From once more."""
    present = Counter(name.lower() for name in names)
    wanted = (ALWAYS_COVERED | sender_covered) - NOT_COVERED
    covered = [name for name in present if name in wanted for _ in range(present[name])]
    return [*covered, b"from"]


def _sender_covered(fields: list[re.Match[bytes]]) -> set[bytes]:
    """The field names in h= of the sender's DKIM-Signature fields (at most the first few:
    a hostile message may carry thousands)."""
    names: set[bytes] = set()
    signatures = [m for m in fields if m.group("name").lower() == b"dkim-signature"]
    for match in signatures[:MAX_SENDER_SIGNATURES]:
        try:
            tags = parse_tag_value(match.group("value"))
        except InvalidTagValueList:
            continue
        for name in tags.get(b"h", b"").split(b":"):
            name = b"".join(name.split()).lower()
            if _VALID_NAME.fullmatch(name):
                names.add(name)
    return names


def _is_results(name: bytes) -> bool:
    return name.lower() == b"authentication-results"


def _ours(fields: list[re.Match[bytes]], authserv_id: str) -> bool:
    """Whether the field below our Received: is our Authentication-Results (RFC 8601 2.2)."""
    if len(fields) < 2 or not _is_results(fields[1].group("name")):
        return False
    ours = re.escape(authserv_id.encode()) + rb"\s*;"
    return re.match(ours, fields[1].group("value").lstrip()) is not None


def _check_key(key: SigningKey) -> None:
    """Raise SigningError unless dkimpy can sign with ``key`` (the error never shows it)."""
    try:
        if key.algorithm == RSA_SHA256:
            if dkim.crypto.parse_pem_private_key(key.private_key)["modulus"].bit_length() < 1024:
                raise ValueError("shorter than RFC 8301 3.2 allows")
        else:
            nacl.signing.SigningKey(key.private_key, encoder=nacl.encoding.Base64Encoder)
    except (dkim.crypto.UnparsableKeyError, nacl.exceptions.CryptoError, ValueError):
        raise SigningError(
            f"the {key.algorithm} key of selector {key.selector!r} cannot be used"
        ) from None
