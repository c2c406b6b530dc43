"""DKIM (RFC 6376) and ARC (RFC 8617): the signatures a message arrived with, verified by
dkimpy with its key look-ups through our Lookups.

dkimpy turns a failed key look-up into a plain False (``DomainSigner.verify_sig`` catches
the dnsfunc's DnsTimeoutError and logs it), which would make a DNS outage look like a
forged signature. So each check gives dkimpy a :class:`_KeyFinder`, which returns None for
a failure and remembers what it found; the verdict of each signature is read from that.

Memory: dkimpy needs the whole message as ``bytes`` (the body hash covers it). A bytearray
is copied once; the same bytes then serve every signature. Messages without a
DKIM-Signature (or ARC-Seal) field are not handed to dkimpy at all, which would split
them into lines.
"""

from __future__ import annotations

import logging
import re
import time

import dkim
from dkim.util import InvalidTagValueList, parse_tag_value

from app.errors import DnsTemporaryFailure
from app.inbound_auth.lookups import Lookups
from app.inbound_auth.reasons import reason
from app.inbound_auth.verdicts import (
    FAIL,
    NONE,
    PASS,
    PERMERROR,
    TEMPERROR,
    Arc,
    Dkim,
    DkimSignature,
)

log = logging.getLogger(__name__)
# dkimpy logs every failed signature at ERROR; its own logger keeps that apart from ours.
_dkimpy_log = logging.getLogger(__name__ + ".dkimpy")

# RFC 8617 4.2.1: a chain of more than 50 sets fails.
MAX_ARC_SETS = 50
# RFC 6376 6.1: a verifier MAY limit the signatures it tries, against denial of service
# (each costs a DNS query and a pass over the body). Those past the limit are not reported.
MAX_SIGNATURES = 8
# The key look-ups of one message, together, take at most this many DNS lifetimes.
LIFETIMES_PER_MESSAGE = 4
HEADER_B_CHARS = 8  # RFC 6008 2: at least eight characters of b= tell signatures apart

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_DKIM_FIELD = re.compile(rb"^dkim-signature[ \t]*:", re.IGNORECASE | re.MULTILINE)
_ARC_SEAL_FIELD = re.compile(rb"^arc-seal[ \t]*:", re.IGNORECASE | re.MULTILINE)
_WHITESPACE = re.compile(rb"\s+")


class _KeyFinder:
    """dkimpy's dnsfunc for one message: the key record's TXT through Lookups, and what
    the last look-up found (None: not asked; "" found a usable key; else why not).

    All look-ups of one message share LIFETIMES_PER_MESSAGE lifetimes: a message with
    many signatures over silent servers cannot hold a thread for one lifetime each."""

    def __init__(self, lookups: Lookups) -> None:
        self._lookups = lookups
        self._deadline = time.monotonic() + lookups.lifetime * LIFETIMES_PER_MESSAGE
        self._found: dict[bytes, tuple[bytes | None, str]] = {}
        self.last: str | None = None
        self.temporary = False

    def __call__(self, name: bytes, timeout: float = 5.0) -> bytes | None:
        if name not in self._found:
            self._found[name] = self._look_up(name)
        record, self.last = self._found[name]
        return record

    def _look_up(self, name: bytes) -> tuple[bytes | None, str]:
        left = self._deadline - time.monotonic()
        try:
            if left <= 0:
                raise DnsTemporaryFailure("the key look-ups of this message ran out of time")
            records = self._lookups.txt(name.decode("ascii"), lifetime=left)
        except UnicodeDecodeError:
            return None, "no key: the selector is not a domain name"
        except DnsTemporaryFailure as exc:
            self.temporary = True
            return None, f"temporary: {exc}"
        if not records:
            return None, "no key published"  # RFC 6376 6.1.2: PERMFAIL (no key)
        # RFC 6376 3.6.2.2: with several records, which one serves is undefined; the first.
        try:
            dkim.evaluate_pk(name, records[0])
        except dkim.DKIMException as exc:
            return records[0], f"unusable key: {exc}"
        return records[0], ""


def _header_section(content: bytes | bytearray) -> int:
    match = _HEADER_END.search(content)
    return match.start() if match else len(content)


async def check_dkim(lookups: Lookups, content: bytes | bytearray) -> Dkim:
    """Every DKIM-Signature of the message (the first MAX_SIGNATURES), verified."""
    if not _DKIM_FIELD.search(content, 0, _header_section(content)):
        return Dkim()
    message = bytes(content) if isinstance(content, bytearray) else content
    return Dkim(await lookups.run(_verify_all, lookups, message))


def _verify_all(lookups: Lookups, message: bytes) -> tuple[DkimSignature, ...]:
    try:
        verifier = dkim.DKIM(message, logger=_dkimpy_log, timeout=lookups.lifetime)
    except dkim.DKIMException as exc:
        return (DkimSignature(PERMERROR, "", "", reason=reason(f"unparsable header: {exc}")),)
    fields = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
    if len(fields) > MAX_SIGNATURES:
        log.info("DKIM: %d signatures, the first %d checked", len(fields), MAX_SIGNATURES)
    finder = _KeyFinder(lookups)
    return tuple(
        _verify_one(verifier, finder, index, value)
        for index, value in enumerate(fields[:MAX_SIGNATURES])
    )


def _verify_one(verifier: dkim.DKIM, finder: _KeyFinder, index: int, value: bytes) -> DkimSignature:
    try:
        tags = parse_tag_value(value)
    except InvalidTagValueList as exc:
        return DkimSignature(PERMERROR, "", "", reason=reason(f"malformed signature: {exc}"))
    domain, selector = _tag(tags, b"d", 255), _tag(tags, b"s", 255)
    header_b = _tag(tags, b"b", HEADER_B_CHARS)

    def verdict(result: str, why: str) -> DkimSignature:
        return DkimSignature(result, domain, selector, header_b, reason(why))

    if tags.get(b"a", b"").strip().lower() == b"rsa-sha1":
        return verdict(PERMERROR, "rsa-sha1 is not acceptable (RFC 8301 3.1)")
    finder.last = None
    try:
        valid = verifier.verify(idx=index, dnsfunc=finder)
    except dkim.DKIMException as exc:
        return verdict(*_exception_verdict(finder.last, exc))
    if valid:
        return verdict(PASS, "")
    return verdict(*_false_verdict(finder.last))


def _exception_verdict(looked_up: str | None, exc: dkim.DKIMException) -> tuple[str, str]:
    # Before the key look-up, dkimpy only checks the signature's own syntax (tags, base64,
    # x= expiry): RFC 6376 6.1.1 PERMFAIL, permerror. We report permerror rather than
    # RFC 8601 2.7.1's "neutral" for a syntax error, as RFC 6376 and most verifiers do.
    if looked_up is None:
        return PERMERROR, f"malformed signature: {exc}"
    if looked_up.startswith("temporary"):
        return TEMPERROR, looked_up
    # After it, a ValidationError is the body hash that does not match (RFC 6376 6.1.3);
    # a MessageFormatError a bad c= tag; a KeyFormatError a key too small (RFC 8301 3.2).
    if isinstance(exc, dkim.ValidationError):
        return FAIL, str(exc).split(" (", 1)[0]
    return PERMERROR, str(exc)


def _false_verdict(looked_up: str | None) -> tuple[str, str]:
    if looked_up is None:
        return PERMERROR, "signature not found"
    if looked_up.startswith("temporary"):
        return TEMPERROR, looked_up  # RFC 6376 6.1.2: TEMPFAIL (key unavailable)
    if looked_up:
        return PERMERROR, looked_up  # no key, or one that does not parse
    return FAIL, "signature did not verify"


def _tag(tags: dict[bytes, bytes], name: bytes, limit: int) -> str:
    value = _WHITESPACE.sub(b"", tags.get(name, b""))[:limit]
    return value.decode("ascii", "replace")


async def check_arc(lookups: Lookups, content: bytes | bytearray) -> Arc:
    """The ARC chain's validation status (RFC 8617 5.2): pass, fail or none."""
    end = _header_section(content)
    seals = len(_ARC_SEAL_FIELD.findall(content, 0, end))
    if not seals:
        return Arc(NONE)
    if seals > MAX_ARC_SETS:
        return Arc(FAIL, f"more than {MAX_ARC_SETS} ARC sets (RFC 8617 4.2.1)")
    message = bytes(content) if isinstance(content, bytearray) else content
    return await lookups.run(_validate_chain, lookups, message)


def _validate_chain(lookups: Lookups, message: bytes) -> Arc:
    finder = _KeyFinder(lookups)
    try:
        status, _sets, why = dkim.arc_verify(message, logger=_dkimpy_log, dnsfunc=finder)
    except dkim.DKIMException as exc:  # a header section dkimpy cannot parse
        return Arc(FAIL, reason(str(exc)))
    if status == dkim.CV_Pass:
        return Arc(PASS)
    if status == dkim.CV_None:
        return Arc(NONE, reason(why))
    # RFC 8617 has no temperror: a key that DNS did not give leaves the chain failing,
    # and the reason says it was temporary.
    if finder.temporary:
        why = f"key look-up failed temporarily ({why})"
    return Arc(FAIL, reason(why))
