"""Authentication-Results (RFC 8601) and the spam fields we prepend."""

from __future__ import annotations

import authres

from app.inbound_auth import headers
from app.inbound_auth.verdicts import Arc, Dkim, DkimSignature, Dmarc, Spam, Spf, Verdicts

VERDICTS = Verdicts(
    Spf("pass", "example.com"),
    Dkim(
        (
            DkimSignature("pass", "example.com", "sel", "AbC/+dEf"),
            DkimSignature("fail", "list.example", "s2", "zzzzzzzz", "body hash mismatch"),
        )
    ),
    Dmarc("pass", "example.com", "reject", "none"),
    Arc("none"),
)


def parsed(field: bytes) -> authres.AuthenticationResultsHeader:
    assert field.endswith(b"\r\n") and field.count(b"\r\n") == field.count(b"\n")
    # Every line but the first is a continuation (RFC 5322 2.2.3).
    assert all(line.startswith(b"\t") for line in field.split(b"\r\n")[1:-1])
    unfolded = field.decode().replace("\r\n", "").replace("\t", " ")
    return authres.AuthenticationResultsHeader.parse(unfolded)


def test_authentication_results_carries_every_method_under_our_id() -> None:
    field = headers.authentication_results(
        "mx.mailroute.example", VERDICTS, mail_from="alice@example.com"
    )
    header = parsed(field)
    assert header.authserv_id == "mx.mailroute.example"
    methods = [(r.method, r.result) for r in header.results]
    assert methods == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dkim", "fail"),
        ("dmarc", "pass"),
        ("arc", "none"),
    ]
    assert b"smtp.mailfrom=alice@example.com" in field
    assert b"header.d=example.com" in field and b"header.s=sel" in field


def test_authentication_results_names_helo_for_the_null_sender() -> None:
    helo = Verdicts(Spf("pass", "mx.sender.example", identity="helo"))
    field = headers.authentication_results("mx.mailroute.example", helo, mail_from="")
    assert b"spf=pass smtp.helo=mx.sender.example" in field
    assert b"dkim=none" in field


def test_authentication_results_cannot_be_broken_by_a_signature() -> None:
    hostile = Verdicts(
        Spf("none", "example.com"),
        Dkim((DkimSignature("permerror", "evil.example\r\nX-Injected: 1", "s\n", "b"),)),
    )
    field = headers.authentication_results("mx.mailroute.example", hostile, mail_from="a@b.c")
    assert b"X-Injected: 1\r\n" not in field
    assert field.count(b"\r\n") == field.count(b"\n")
    assert all(line.startswith(b"\t") for line in field.split(b"\r\n")[1:-1])


def test_spam_headers_say_score_and_whether_it_is_spam() -> None:
    flagged = headers.spam_headers(Spam("add header", 7.5, 15.0))
    clean = headers.spam_headers(Spam("no action", -0.1))
    assert flagged == (
        b"X-Spam-Status: Yes, score=7.50 required=15.00 action=add_header\r\nX-Spam-Score: 7.50\r\n"
    )
    assert clean.startswith(b"X-Spam-Status: No, score=-0.10 action=no_action\r\n")
