"""reason(): remote text fit for one line of a header comment."""

from __future__ import annotations

from app.inbound_auth.reasons import reason


def test_reason_keeps_plain_text() -> None:
    assert reason("body hash mismatch") == "body hash mismatch"


def test_reason_cannot_end_a_header_line() -> None:
    assert reason("no\r\nX-Injected: yes\tand\x00more") == "no X-Injected: yes and more"


def test_reason_replaces_non_ascii() -> None:
    assert reason("caf\u00e9 ok") == "caf ok"


def test_reason_is_cut_to_its_limit() -> None:
    cut = reason("word " * 100, limit=20)
    assert (len(cut) <= 20, cut.endswith("...")) == (True, True)
