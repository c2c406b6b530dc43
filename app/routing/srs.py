"""The Sender Rewriting Scheme (SRS0/SRS1, the guarded scheme of the SRS paper).

The format is postsrsd's and libsrs2's, so a bounce address rewritten by either with the
same secret is one we reverse, and the reverse: a 4-character base64 HMAC-SHA1 over the
lower-cased day stamp, domain and local part, a 2-character base32 day stamp, and 21 days
in which a rewritten address can be reversed. Forwarding rewrites only the envelope sender,
to an address on our host name, so SPF at the destination checks our host; bounces to
that address are reversed and relayed to the original sender.

Reversal is written here rather than left to srslib: srslib takes the hash length from the
address it checks (a one-character hash passes after ~32 guesses), compares with ``==``,
and reverses SRS1 without any check of age. Ours demands exactly HASH_LENGTH characters,
compares in constant time, and bounds the age of SRS0 and SRS1 alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.routing.address import Address

SRS_PREFIXES = ("srs0", "srs1")
VALIDITY_DAYS = 21
HASH_LENGTH = 4  # postsrsd's and libsrs2's default, so addresses interoperate
SEPARATORS = "=+-"  # what may follow SRS0/SRS1 (the SRS paper; postsrsd's -a)
# The SRS paper's base32: the day number modulo 1024 in two characters.
STAMP_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
STAMP_MODULUS = len(STAMP_ALPHABET) ** 2
SECONDS_PER_DAY = 86400


class SrsInvalid(Exception):
    """Not an SRS address we made, forged, or expired."""


@dataclass(frozen=True, slots=True)
class _Srs0:
    """The parts of an SRS0 local part after ``SRS0=``: HASH=TT=domain=local."""

    hash: str
    stamp: str
    domain: str
    local: str

    @classmethod
    def parse(cls, text: str) -> _Srs0:
        parts = text.split("=", 3)
        if len(parts) != 4 or not all(parts):
            raise SrsInvalid("malformed SRS0 address")
        return cls(*parts)


class Srs:
    def __init__(
        self,
        secret: str,
        domain: str,
        *,
        previous_secrets: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.domain = domain.lower()
        self._secrets = [s.encode("utf-8") for s in (secret, *previous_secrets)]
        self._clock = clock

    def forward(self, sender: str) -> str:
        """The envelope sender to use when forwarding mail from ``sender``.

        The null sender stays null (RFC 5321 4.5.5: bounces must not be bounced), and a
        sender already on our domain needs no rewriting. An SRS0 address of another
        forwarder becomes SRS1 (bounces go back through that first hop), and an SRS1
        address keeps its first hop with our hash, as postsrsd does.
        """
        if not sender:
            return ""
        local, _, domain = sender.rpartition("@")
        if not local or domain.lower() == self.domain:
            return sender
        prefix, separator, rest = local[:4].upper(), local[4:5], local[5:]
        if separator and separator in SEPARATORS and rest:
            if prefix == "SRS0":
                return self._srs1(domain, separator + rest)
            if prefix == "SRS1":
                _hash, first_hop, opaque = (rest.split("=", 2) + ["", ""])[:3]
                if first_hop and opaque:
                    return self._srs1(first_hop, opaque)
        stamp = self._stamp(self._today())
        digest = self._hash(self._secrets[0], stamp, domain, local)
        return f"SRS0={digest}={stamp}={domain}={local}@{self.domain}"

    def is_srs(self, address: Address) -> bool:
        """An address on our SRS domain that looks like SRS (whether or not it is valid)."""
        return address.domain == self.domain and address.key.startswith(SRS_PREFIXES)

    def reverse(self, address: Address) -> str:
        """The address a bounce to ``address`` goes back to; SrsInvalid if forged or expired.

        SRS1 (we were a later hop) returns to the first hop's SRS0 address; its hash is
        ours, and the first hop's day stamp inside must be as fresh as one of ours.
        """
        if not self.is_srs(address):
            raise SrsInvalid(f"{address} is not an SRS address of {self.domain}")
        local = address.local
        separator, rest = local[4:5], local[5:]
        if separator not in SEPARATORS or not separator:
            raise SrsInvalid("no separator after the SRS tag")
        if address.key.startswith("srs0"):
            srs0 = _Srs0.parse(rest)
            self._check_stamp(srs0.stamp)
            self._check_hash(srs0.hash, srs0.stamp, srs0.domain, srs0.local)
            return f"{srs0.local}@{srs0.domain}"
        parts = rest.split("=", 2)
        if len(parts) != 3 or not all(parts) or parts[2][0] not in SEPARATORS:
            raise SrsInvalid("malformed SRS1 address")
        digest, first_hop, opaque = parts
        self._check_stamp(_Srs0.parse(opaque[1:]).stamp)
        self._check_hash(digest, first_hop, opaque)
        return f"SRS0{opaque}@{first_hop}"

    def _srs1(self, first_hop: str, opaque: str) -> str:
        digest = self._hash(self._secrets[0], first_hop, opaque)
        return f"SRS1={digest}={first_hop}={opaque}@{self.domain}"

    @staticmethod
    def _hash(secret: bytes, *fields: str) -> str:
        # libsrs2 and postsrsd feed each field lower-cased into one HMAC-SHA1.
        data = "".join(fields).lower().encode("utf-8", "surrogateescape")
        mac = hmac.new(secret, data, hashlib.sha1).digest()
        return base64.b64encode(mac)[:HASH_LENGTH].decode("ascii")

    def _check_hash(self, given: str, *fields: str) -> None:
        # Exactly HASH_LENGTH characters: a shorter hash is a shorter guess. Compared
        # case-insensitively (as postsrsd: some MTAs lower-case local parts) and in
        # constant time, against the current secret and any previous one.
        if len(given) != HASH_LENGTH:
            raise SrsInvalid("the hash has the wrong length")
        folded = given.casefold().encode("utf-8", "surrogateescape")
        valid = False
        for secret in self._secrets:
            expected = self._hash(secret, *fields).casefold().encode("ascii")
            valid |= hmac.compare_digest(expected, folded)
        if not valid:
            raise SrsInvalid("the hash does not match")

    def _check_stamp(self, stamp: str) -> None:
        upper = stamp.upper()
        if len(upper) != 2 or any(c not in STAMP_ALPHABET for c in upper):
            raise SrsInvalid("malformed day stamp")
        day = STAMP_ALPHABET.index(upper[0]) * 32 + STAMP_ALPHABET.index(upper[1])
        age = (self._today() - day) % STAMP_MODULUS  # the stamp wraps every 1024 days
        if age > VALIDITY_DAYS:
            raise SrsInvalid("expired (or from the future)")

    def _today(self) -> int:
        return int(self._clock() // SECONDS_PER_DAY)

    @staticmethod
    def _stamp(day: int) -> str:
        day %= STAMP_MODULUS
        return STAMP_ALPHABET[day >> 5] + STAMP_ALPHABET[day & 31]
