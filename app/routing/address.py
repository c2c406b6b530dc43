"""Parsing and normalising addresses and domain names, with email-validator and idna.

Local parts are matched case-insensitively (as Postfix's virtual maps and Cloudflare do),
so the lookup key is the lower-cased, NFC-normalised local part. Domains are compared in
their ASCII (A-label) form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import email_validator
import idna
from email_validator import EmailNotValidError, validate_email

from app.errors import InvalidAddress, InvalidDomain, InvalidLocalPart

MAX_DOMAIN_LENGTH = 253  # RFC 1035 2.3.4, without the trailing dot
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 4.5.3.1.1
# RFC 5321 4.1.2 Dot-string: atext (RFC 5322 3.2.3, with RFC 6531's UTF-8) between dots.
_ATEXT = r"[^\x00-\x20\x7f\"(),.:;<>@\[\\\]]+"
DOT_STRING = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_QUOTED_PAIR = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class Address:
    """A syntactically valid address: ``local`` as given (NFC), ``domain`` in ASCII."""

    local: str
    domain: str
    is_literal: bool = False

    @property
    def key(self) -> str:
        """The local part as rules are looked up by."""
        return self.local.lower()

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


# Remembered: the same recipients come again and again, and email-validator's parse is
# most of a look-up's cost. Pure, and an invalid address raises (never remembered).
@lru_cache(maxsize=8192)
def parse_address(raw: str) -> Address:
    """Parse one address (no display name, no angle brackets) or raise InvalidAddress.

    IP literals parse (``user@[127.0.0.1]``) but are never a served domain; quoted local
    parts parse too, so ``"user@foreign"@ours`` is just an odd local part on our domain.
    """
    try:
        result = validate_email(
            raw,
            check_deliverability=False,
            globally_deliverable=False,
            allow_quoted_local=True,
            allow_domain_literal=True,
            allow_smtputf8=True,
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{raw!r} is not a valid email address: {exc}") from None
    # ValidatedEmail only has ``domain_address`` when the domain is a literal.
    is_literal = getattr(result, "domain_address", None) is not None
    return Address(
        local=result.local_part, domain=result.ascii_domain.lower(), is_literal=is_literal
    )


def forwardable_sender(sender: str) -> str:
    """The envelope sender as we pass it on (rewritten by SRS, or as a DSN's recipient).

    A quoted local part whose content is a Dot-string loses its quotes: RFC 5321 4.1.2
    makes the two the same mailbox. Any other Quoted-string (``"a> X=Y"@example.org``)
    raises InvalidAddress: inside an SRS address it would reach the next hop's MAIL FROM
    unquoted, where ``>`` ends the path and the rest becomes parameters. RFC 5321 4.1.2
    asks hosts not to define such mailboxes; refusing them costs nearly no one.
    """
    local, at, domain = sender.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"{sender!r} is not a full address (local-part@domain)")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    if not DOT_STRING.fullmatch(local):
        raise InvalidAddress(f"{sender!r} has a local part that is not a plain dot-atom")
    return f"{local}@{domain}"


def normalize_domain(name: str) -> str:
    """Lower case, IDNA (UTS #46) to A-labels, validated; raise InvalidDomain."""
    text = name.strip()
    text = text[:-1] if text.endswith(".") else text  # the root's dot, once; ".." is an error
    if not text:
        raise InvalidDomain("a domain name is required")
    try:
        ascii_name = idna.encode(text, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidDomain(f"{name!r} is not a valid domain name: {exc}") from None
    ascii_name = ascii_name.lower()
    labels = ascii_name.split(".")
    if "" in labels:
        raise InvalidDomain(f"{name!r} is not a valid domain name: it has an empty label")
    if len(labels) < 2:
        raise InvalidDomain(f"{name!r} is not a fully qualified domain name (it has no dot)")
    if len(ascii_name) > MAX_DOMAIN_LENGTH:
        raise InvalidDomain(f"{name!r} is longer than {MAX_DOMAIN_LENGTH} characters")
    if labels[-1].isdigit():
        raise InvalidDomain(f"{name!r} ends in a numeric label, like an IP address")
    return ascii_name


def refuse_special_use(ascii_name: str) -> None:
    """Refuse a normalised domain under a special-use name (.test, .local, .onion, .arpa...).

    The list is email-validator's, which every address we parse is checked against: no
    alias on such a domain could ever be created or receive mail, nor a destination
    there be added, so the domain itself is refused, with a message that says why.
    """
    for suffix in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        if suffix == "test" and email_validator.TEST_ENVIRONMENT:
            continue  # email-validator lets .test through then, and so do we
        if ascii_name == suffix or ascii_name.endswith(f".{suffix}"):
            raise InvalidDomain(
                f"{ascii_name} is under .{suffix}, a special-use domain name (RFC 6761) "
                "that no email address may use"
            )


def unicode_domain(ascii_name: str) -> str:
    """The U-label form of a normalised domain, for display."""
    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name


def normalize_local_part(local_part: str, domain: str) -> str:
    """Validate a local part for an alias on ``domain``; return its lookup key.

    Only dot-atoms are accepted for aliases we create: quoted local parts are legal on the
    wire but no one types them, and they invite confusion with ``"user@foreign"``.
    """
    if not local_part or local_part != local_part.strip():
        raise InvalidLocalPart("the local part must not be empty or have surrounding spaces")
    if local_part.startswith('"'):
        raise InvalidLocalPart("quoted local parts are not supported for aliases")
    if len(local_part.encode("utf-8", "surrogatepass")) > MAX_LOCAL_PART_OCTETS:
        raise InvalidLocalPart(f"a local part is at most {MAX_LOCAL_PART_OCTETS} octets long")
    try:
        address = parse_address(f"{local_part}@{domain}")
    except InvalidAddress as exc:
        raise InvalidLocalPart(exc.message.replace(f"@{domain}", "", 1)) from None
    return address.key
