"""SRS rewriting (the guarded scheme, as libsrs2 and postsrsd do it), with an injected clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from app.routing import parse_address
from app.routing.srs import Srs, SrsInvalid

SECRET = "test-srs-secret-0123456789"
HOST = "mx.mailroute.example"
DAY = 86400.0
# 1_700_000_000 s is day 19675 since the epoch: 19675 = 614 * 32 + 27, and 614 % 32 = 6,
# so the base32 day stamp (alphabet A-Z2-7) is "G" then "3".
NOW = 1_700_000_000.0
STAMP = "G3"
FIRST_HOP_SRS0 = "SRS0=AbCd=G3=orig.example=user@firsthop.example"


def make_srs(now: float = NOW, secret: str = SECRET, previous_secrets: tuple[str, ...] = ()) -> Srs:
    return Srs(secret, HOST, previous_secrets=previous_secrets, clock=lambda: now)


def reverse(srs: Srs, address: str) -> str:
    return srs.reverse(parse_address(address))


def expected_hash(text: str, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), text.lower().encode(), hashlib.sha1).digest()
    return base64.b64encode(digest)[:4].decode()


def test_srs_forward_rewrites_to_srs0_on_our_host() -> None:
    rewritten = make_srs().forward("alice@sender.example")
    assert re.fullmatch(rf"SRS0=[A-Za-z0-9+/]{{4}}={STAMP}=sender\.example=alice@{HOST}", rewritten)


def test_srs_forward_hash_is_hmac_of_stamp_domain_and_local_part() -> None:
    rewritten = make_srs().forward("alice@sender.example")
    assert rewritten.split("=")[1] == expected_hash(f"{STAMP}sender.examplealice")


def test_srs_reverse_gives_the_original_sender() -> None:
    srs = make_srs()
    assert reverse(srs, srs.forward("alice@sender.example")) == "alice@sender.example"


def test_srs_reverse_keeps_the_case_of_the_local_part() -> None:
    srs = make_srs()
    assert reverse(srs, srs.forward("Alice.Smith@sender.example")) == "Alice.Smith@sender.example"


def test_srs_forward_of_srs0_from_another_host_gives_srs1() -> None:
    rewritten = make_srs().forward(FIRST_HOP_SRS0)
    assert rewritten.startswith("SRS1=")
    assert rewritten.endswith(f"=firsthop.example==AbCd=G3=orig.example=user@{HOST}")


def test_srs_reverse_of_srs1_gives_the_first_hop_srs0() -> None:
    srs = make_srs()
    assert reverse(srs, srs.forward(FIRST_HOP_SRS0)) == FIRST_HOP_SRS0


def test_srs_forward_keeps_the_null_sender() -> None:
    assert make_srs().forward("") == ""


def test_srs_forward_leaves_our_own_domain_alone() -> None:
    assert make_srs().forward(f"postmaster@{HOST}") == f"postmaster@{HOST}"


def test_srs_forward_leaves_our_own_domain_alone_in_any_case() -> None:
    assert (
        make_srs().forward("postmaster@MX.Mailroute.Example") == "postmaster@MX.Mailroute.Example"
    )


def test_srs_reverse_rejects_a_tampered_hash() -> None:
    srs = make_srs()
    local, _, domain = srs.forward("alice@sender.example").partition("@")
    parts = local.split("=")
    parts[1] = "AAAA" if parts[1] != "AAAA" else "BBBB"
    with pytest.raises(SrsInvalid):
        reverse(srs, "=".join(parts) + "@" + domain)


def test_srs_reverse_rejects_a_changed_original_sender() -> None:
    srs = make_srs()
    forged = srs.forward("alice@sender.example").replace("=alice@", "=mallory@")
    with pytest.raises(SrsInvalid):
        reverse(srs, forged)


def test_srs_reverse_rejects_a_tampered_srs1_hash() -> None:
    srs = make_srs()
    rewritten = srs.forward(FIRST_HOP_SRS0)
    tampered = re.sub(r"^SRS1=[^=]{4}=", "SRS1=zzzz=", rewritten)
    assert tampered != rewritten
    with pytest.raises(SrsInvalid):
        reverse(srs, tampered)


def test_srs_reverse_rejects_an_unknown_prefix() -> None:
    with pytest.raises(SrsInvalid):
        reverse(make_srs(), f"SRS2=HgLN=G3=sender.example=alice@{HOST}")


def test_srs_reverse_rejects_a_malformed_srs0() -> None:
    with pytest.raises(SrsInvalid):
        reverse(make_srs(), f"SRS0-nothing-here@{HOST}")


def test_srs_reverse_rejects_another_domain() -> None:
    srs = make_srs()
    local = srs.forward("alice@sender.example").partition("@")[0]
    with pytest.raises(SrsInvalid):
        reverse(srs, f"{local}@other.example")


def test_srs_reverse_rejects_an_address_older_than_21_days() -> None:
    rewritten = make_srs(NOW).forward("alice@sender.example")
    with pytest.raises(SrsInvalid):
        reverse(make_srs(NOW + 22 * DAY), rewritten)


def test_srs_reverse_accepts_an_address_20_days_old() -> None:
    rewritten = make_srs(NOW).forward("alice@sender.example")
    assert reverse(make_srs(NOW + 20 * DAY), rewritten) == "alice@sender.example"


def test_srs_reverse_rejects_a_stamp_from_the_future() -> None:
    rewritten = make_srs(NOW + 5 * DAY).forward("alice@sender.example")
    with pytest.raises(SrsInvalid):
        reverse(make_srs(NOW), rewritten)


def test_srs_reverse_checks_the_hash_case_insensitively() -> None:
    # Some MTAs lower-case the whole address on the way back (libsrs2 allows for it).
    srs = make_srs()
    lowered = srs.forward("alice@sender.example").lower()
    assert reverse(srs, lowered) == "alice@sender.example"


def test_srs_reverse_accepts_a_previous_secret() -> None:
    rewritten = make_srs(secret="old-secret").forward("alice@sender.example")
    rotated = make_srs(secret="new-secret", previous_secrets=("old-secret",))
    assert reverse(rotated, rewritten) == "alice@sender.example"


def test_srs_reverse_rejects_another_secret() -> None:
    rewritten = make_srs(secret="someone-else").forward("alice@sender.example")
    with pytest.raises(SrsInvalid):
        reverse(make_srs(), rewritten)


def test_srs_is_srs_for_srs0_and_srs1_on_our_host() -> None:
    srs = make_srs()
    assert srs.is_srs(parse_address(srs.forward("alice@sender.example")))
    assert srs.is_srs(parse_address(srs.forward(FIRST_HOP_SRS0)))


def test_srs_is_srs_in_any_case() -> None:
    assert make_srs().is_srs(parse_address(f"srs0=x=y=z=w@{HOST.upper()}"))


def test_srs_is_srs_not_for_plain_addresses() -> None:
    assert not make_srs().is_srs(parse_address(f"postmaster@{HOST}"))


def test_srs_is_srs_not_for_another_domain() -> None:
    assert not make_srs().is_srs(parse_address(FIRST_HOP_SRS0))


@pytest.mark.parametrize("length", [0, 1, 2, 3, 5])
def test_srs_reverse_refuses_a_hash_of_any_other_length(length: int) -> None:
    srs = make_srs()
    genuine = srs.forward("alice@sender.example")
    real = genuine.split("=")[1]
    forged = genuine.replace(f"={real}=", f"={(real * 2)[:length]}=", 1)
    with pytest.raises(SrsInvalid, match="length|malformed"):
        reverse(srs, forged)


def test_srs_reverse_refuses_a_truncated_srs1_hash() -> None:
    srs = make_srs()
    genuine = srs.forward(FIRST_HOP_SRS0)
    real = genuine.split("=")[1]
    with pytest.raises(SrsInvalid):
        reverse(srs, genuine.replace(f"SRS1={real}=", f"SRS1={real[:1]}=", 1))


def test_srs_reverse_refuses_an_srs1_whose_first_hop_stamp_expired() -> None:
    # Our hash is good, but the first hop's day stamp inside is 30 days old.
    old = Srs("first-hop", "firsthop.example", clock=lambda: NOW - 30 * DAY)
    srs = make_srs()
    rewritten = srs.forward(old.forward("user@orig.example"))
    with pytest.raises(SrsInvalid, match="expired"):
        reverse(srs, rewritten)


def test_srs_reverse_refuses_an_srs1_without_an_srs0_inside() -> None:
    srs = make_srs()
    digest = expected_hash("firsthop.example=garbage")
    with pytest.raises(SrsInvalid):
        reverse(srs, f"SRS1={digest}=firsthop.example==garbage@{HOST}")
