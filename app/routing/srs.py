"""The Sender Rewriting Scheme (SRS0/SRS1, the guarded scheme of the SRS paper), via srslib.

srslib follows libsrs2 and postsrsd: a 4-character base64 HMAC-SHA1 over the (lower-cased)
timestamp, domain and local part, a base32 day stamp, and 21 days in which a rewritten
address can be reversed. Forwarding rewrites only the envelope sender, to an address on our
host name, so SPF at the destination checks our host; bounces to that address are reversed
and relayed to the original sender.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import srslib

from app.routing.address import Address

SRS_PREFIXES = ("srs0", "srs1")
VALIDITY_DAYS = 21


class SrsInvalid(Exception):
    """Not an SRS address we made, forged, or expired."""


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
        self._srs = srslib.SRS(secret, list(previous_secrets), VALIDITY_DAYS)
        self._srs._time_fn = clock  # srslib's own seam for its clock

    def forward(self, sender: str) -> str:
        """The envelope sender to use when forwarding mail from ``sender``.

        The null sender stays null (RFC 5321 4.5.5: bounces must not be bounced), and a
        sender already on our domain needs no rewriting.
        """
        if not sender:
            return ""
        local, _, domain = sender.rpartition("@")
        if not local or domain.lower() == self.domain:
            return sender
        rewritten: str = self._srs.forward(sender, self.domain)
        return rewritten

    def is_srs(self, address: Address) -> bool:
        """An address on our SRS domain that looks like SRS (whether or not it is valid)."""
        return address.domain == self.domain and address.key.startswith(SRS_PREFIXES)

    def reverse(self, address: Address) -> str:
        """The address a bounce to ``address`` goes back to; SrsInvalid if forged or expired."""
        if not self.is_srs(address):
            raise SrsInvalid(f"{address} is not an SRS address of {self.domain}")
        try:
            original: str = self._srs.reverse(f"{address.local}@{self.domain}")
        except srslib.Error as exc:
            raise SrsInvalid(str(exc)) from None
        return original
