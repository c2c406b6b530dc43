"""The path of MAIL FROM and RCPT TO (RFC 5321 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">"),
checked more strictly than aiosmtpd's parser does, and parsed faster when it is plain."""

from __future__ import annotations

import re
from collections.abc import Callable

from app import message

Parsed = tuple[str | None, str | None]  # (address, parameters); (None, None): no parse

# What breaks a header line (app.message), and the lone surrogates that stand for bytes
# that are not UTF-8 (aiosmtpd decodes arguments with surrogateescape): never in a name
# we keep or echo.
UNSAFE_TEXT = re.compile(f"{message.LINE_BREAKING.pattern}|[\ud800-\udfff]")
# The path nearly every client sends: <dot-atom@host.name>, then the parameters. Such a
# path is its own address, so it skips the email package's RFC 5322 parser, which costs
# more than the rest of the command (anything else still goes through it).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
# Not before "(": an RFC 5322 comment, which the parser skips (and then finds no
# parameters where we would see one).
SIMPLE_PATH = re.compile(
    rf"\s*<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>(?!\s*\()(.*)", re.DOTALL
)


def parse_path(arg: str, parser: Callable[[str], Parsed], *, fast: bool = True) -> Parsed:
    """The address in ``arg`` and the parameters after it, by SIMPLE_PATH when ``fast``
    and it matches, else by ``parser`` (aiosmtpd's); (None, None) for a path with
    unbalanced brackets or unsafe text."""
    simple = SIMPLE_PATH.fullmatch(arg) if fast else None
    if simple is not None:
        address, rest = simple.group(1), simple.group(2).lstrip(" \t")
    else:
        try:
            address, rest = parser(arg)
        except (IndexError, ValueError):  # the email package on "<" alone
            return None, None
    if address and rest is not None and unbalanced_path(arg, rest):
        return None, None
    if address and UNSAFE_TEXT.search(address):
        return None, None
    return address, rest


def unbalanced_path(path: str, rest: str) -> bool:
    """Whether the path around a parsed address has a missing or stray angle bracket.

    Python's parser (which aiosmtpd uses) forgives "<user@ours" and leaves a stray ">"
    to the parameters; Postfix answers both with 501 5.1.3, and so do we (a bare address
    without brackets stays allowed, as Postfix's strict_rfc821_envelopes = no does).
    """
    text = path.strip()
    if rest.lstrip().startswith(("<", ">")):
        return True
    consumed = text[: len(text) - len(rest)].rstrip()
    return text.startswith("<") != consumed.endswith(">")
