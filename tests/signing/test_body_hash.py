"""app.signing.body_hash against dkimpy: the digest of a body fed in any pieces is the
sha256 of what dkimpy's parser and canonicalization make of the whole body."""

from __future__ import annotations

import hashlib
import re

import pytest
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from app.signing import body_hash
from app.signing.body_hash import BodyHash, body_digests


def dkimpys(body: bytes, *, relaxed: bool) -> bytes:
    parsed = b"\r\n".join(re.split(b"\r?\n", body))  # dkim.rfc822_parse's body
    canonical = (Relaxed if relaxed else Simple).canonicalize_body(parsed)
    return hashlib.sha256(canonical).digest()


def fed(body: bytes, cuts: list[int], *, relaxed: bool) -> bytes:
    hasher = BodyHash(relaxed=relaxed)
    edges = [0, *sorted(cut % (len(body) + 1) for cut in cuts), len(body)]
    for start, end in zip(edges, edges[1:], strict=False):
        hasher.update(body[start:end])
    return hasher.digest()


BODIES = {
    "empty": b"",
    "one-crlf": b"\r\n",
    "empty-lines": b"\r\n\r\n\r\n",
    "text": b"Shall we meet?\r\n\r\nNoon.\r\n",
    "no-final-crlf": b"line 1\r\nline 2",
    "trailing-blank-lines": b"text\r\n\r\n\r\n\r\n",
    "bare-lf": b"line 1\nline 2\n\n",
    "bare-cr": b"a\rb\r\n\r",
    "wsp": b"  a \t b  \r\n\t\r\n \r\n",
    "wsp-at-end": b"a\r\n  ",
    "cr-then-wsp": b"a \r \r\n",
    "only-wsp": b" \t ",
}

ALPHABET = st.sampled_from([b"a", b" ", b"\t", b"\r", b"\n", b"\r\n", b"x y"])


@pytest.mark.parametrize("relaxed", [False, True], ids=["simple", "relaxed"])
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_body_hash_is_dkimpys(body: bytes, relaxed: bool) -> None:
    assert fed(body, [], relaxed=relaxed) == dkimpys(body, relaxed=relaxed)


@pytest.mark.parametrize("relaxed", [False, True], ids=["simple", "relaxed"])
@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(ALPHABET, max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_body_hash_in_any_pieces_is_dkimpys(body: bytes, cuts: list[int], relaxed: bool) -> None:
    assert fed(body, cuts, relaxed=relaxed) == dkimpys(body, relaxed=relaxed)


def test_body_hash_across_pieces_of_the_real_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # Empty lines, runs of WSP and a CRLF split by the piece boundary, many pieces long.
    monkeypatch.setattr(body_hash, "PIECE", 7)
    body = b"a \r\n\r\n" + b" " * 50 + b"b\r" + b"\n" * 30 + b"c\t\t\r\n" * 9 + b"\r\n" * 40
    digests = body_digests(body)
    assert digests.simple == dkimpys(body, relaxed=False)
    assert digests.relaxed == dkimpys(body, relaxed=True)


def test_body_hash_megabytes_of_empty_lines_are_counted_not_kept() -> None:
    body = b"text\r\n" + b"\r\n" * 3_000_000 + b"more\r\n"
    digests = body_digests(bytearray(body))
    assert digests.simple == dkimpys(body, relaxed=False)
    assert digests.relaxed == dkimpys(body, relaxed=True)


def test_body_hash_digest_can_be_fed_on() -> None:
    hasher = BodyHash(relaxed=True)
    hasher.update(b"a\r\n\r\n")
    assert hasher.digest() == dkimpys(b"a\r\n\r\n", relaxed=True)
    hasher.update(b"b \r\n")
    assert hasher.digest() == dkimpys(b"a\r\n\r\nb \r\n", relaxed=True)
