"""Parsing addresses and normalising domains and local parts (app.routing.address)."""

from __future__ import annotations

import pytest

from app.errors import InvalidAddress, InvalidDomain, InvalidLocalPart
from app.routing import (
    Address,
    normalize_domain,
    normalize_local_part,
    parse_address,
    refuse_special_use,
)

OURS = "ours.example"

# 63 + 1 + 63 + 1 + 63 + 1 + 57 + 1 + 3: the longest name RFC 1035 allows.
LONGEST_DOMAIN = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57, "org"])


# --- parse_address -------------------------------------------------------------------


def test_parse_address_keeps_local_part_case_and_lowers_domain() -> None:
    assert parse_address("Shop@Ours.EXAMPLE") == Address("Shop", OURS)


def test_address_key_is_local_part_in_lower_case() -> None:
    assert parse_address("Shop.News@ours.example").key == "shop.news"


def test_address_key_lowers_non_ascii_letters() -> None:
    assert parse_address("ÜSER@ours.example").key == "üser"


def test_address_str_is_local_part_at_ascii_domain() -> None:
    assert str(parse_address("Shop@Bücher.example")) == "Shop@xn--bcher-kva.example"


def test_parse_address_converts_unicode_domain_to_a_labels() -> None:
    assert parse_address("shop@bücher.example") == Address("shop", "xn--bcher-kva.example")


def test_parse_address_keeps_a_label_domain() -> None:
    assert parse_address("shop@XN--BCHER-KVA.example") == Address("shop", "xn--bcher-kva.example")


def test_parse_address_normalizes_local_part_to_nfc() -> None:
    assert parse_address("e\u0301cole@ours.example").local == "\u00e9cole"


def test_parse_address_keeps_quoted_local_part_with_at_sign_on_our_domain() -> None:
    assert parse_address('"user@foreign.example"@ours.example') == Address(
        '"user@foreign.example"', OURS
    )


def test_parse_address_unquotes_needlessly_quoted_local_part() -> None:
    assert parse_address('"shop"@ours.example') == Address("shop", OURS)


def test_parse_address_treats_percent_hack_as_a_local_part() -> None:
    assert parse_address("user%foreign.example@ours.example") == Address(
        "user%foreign.example", OURS
    )


def test_parse_address_flags_ipv4_literal() -> None:
    assert parse_address("user@[192.0.2.1]") == Address("user", "[192.0.2.1]", is_literal=True)


def test_parse_address_flags_ipv6_literal() -> None:
    assert parse_address("user@[IPv6:2001:db8::1]").is_literal


def test_parse_address_does_not_flag_a_domain_name_as_literal() -> None:
    assert not parse_address("user@ours.example").is_literal


@pytest.mark.parametrize(
    "raw",
    ["user@foreign.example@ours.example", "user@foreign@ours.example", "a@b@c@ours.example"],
)
def test_parse_address_refuses_relay_trick_with_several_at_signs(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(raw)


@pytest.mark.parametrize(
    "raw",
    ["@relay.example:user@ours.example", "@a.example,@b.example:user@ours.example"],
)
def test_parse_address_refuses_source_route(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(raw)


@pytest.mark.parametrize("raw", ["user@ours.example.", "user@ours.example.."])
def test_parse_address_refuses_trailing_dot(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "user",
        "@ours.example",
        "user@",
        "<user@ours.example>",
        "Shop <shop@ours.example>",
        "us er@ours.example",
        "user@ours_x.example",
        "user@.ours.example",
        "user@[300.1.1.1]",
    ],
)
def test_parse_address_refuses_malformed_address(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_address(raw)


def test_parse_address_error_has_invalid_address_code() -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_address("not an address")
    assert caught.value.code == "invalid_address"


# --- normalize_domain ------------------------------------------------------------------


def test_normalize_domain_lowers_case() -> None:
    assert normalize_domain("Ours.EXAMPLE") == OURS


def test_normalize_domain_converts_u_labels_to_a_labels() -> None:
    assert normalize_domain("Bücher.example") == "xn--bcher-kva.example"


def test_normalize_domain_converts_every_label() -> None:
    assert normalize_domain("例え.テスト") == "xn--r8jz45g.xn--zckzah"


def test_normalize_domain_uses_non_transitional_processing() -> None:
    # UTS #46 non-transitional (IDNA 2008): ß is kept, not mapped to "ss".
    assert normalize_domain("straße.example") == "xn--strae-oqa.example"


def test_normalize_domain_keeps_a_labels() -> None:
    assert normalize_domain("xn--bcher-kva.example") == "xn--bcher-kva.example"


def test_normalize_domain_drops_the_root_dot() -> None:
    assert normalize_domain("ours.example.") == OURS


def test_normalize_domain_strips_surrounding_spaces() -> None:
    assert normalize_domain("  ours.example ") == OURS


def test_normalize_domain_accepts_253_characters() -> None:
    assert normalize_domain(LONGEST_DOMAIN) == LONGEST_DOMAIN


def test_normalize_domain_refuses_over_253_characters() -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain("a" + LONGEST_DOMAIN)


@pytest.mark.parametrize("name", ["ex_ample.org", "_dmarc.ours.example"])
def test_normalize_domain_refuses_underscore(name: str) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(name)


@pytest.mark.parametrize("name", ["ours..example", ".ours.example", "ours.example.."])
def test_normalize_domain_refuses_empty_label(name: str) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(name)


@pytest.mark.parametrize("name", ["localhost", "example", "bücher"])
def test_normalize_domain_refuses_name_without_dot(name: str) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(name)


@pytest.mark.parametrize("name", ["ours.123", "192.0.2.1"])
def test_normalize_domain_refuses_numeric_top_level_label(name: str) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(name)


@pytest.mark.parametrize("name", ["", " ", "."])
def test_normalize_domain_refuses_empty_name(name: str) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(name)


@pytest.mark.parametrize(
    "name",
    ["-ours.example", "ours-.example", "a" * 64 + ".example", "ou rs.example", "xn--zz.example"],
)
def test_normalize_domain_refuses_invalid_label(name: str) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(name)


# --- normalize_local_part ------------------------------------------------------------


def test_normalize_local_part_returns_lower_case_key() -> None:
    assert normalize_local_part("Shop", OURS) == "shop"


def test_normalize_local_part_lowers_non_ascii_letters() -> None:
    assert normalize_local_part("JÖHN", OURS) == "jöhn"


def test_normalize_local_part_normalizes_to_nfc() -> None:
    assert normalize_local_part("E\u0301cole", OURS) == "\u00e9cole"


def test_normalize_local_part_keeps_subaddress_tag() -> None:
    assert normalize_local_part("Shop+News", OURS) == "shop+news"


def test_normalize_local_part_accepts_64_characters() -> None:
    assert normalize_local_part("a" * 64, OURS) == "a" * 64


def test_normalize_local_part_refuses_over_64_characters() -> None:
    # RFC 5321 4.5.3.1.1: a local part has at most 64 octets (and rules.local_part is 64 wide).
    with pytest.raises(InvalidLocalPart):
        normalize_local_part("a" * 65, OURS)


@pytest.mark.parametrize("local_part", ["", " shop", "shop ", " "])
def test_normalize_local_part_refuses_empty_or_padded(local_part: str) -> None:
    with pytest.raises(InvalidLocalPart):
        normalize_local_part(local_part, OURS)


@pytest.mark.parametrize("local_part", ['"shop"', '"user@foreign.example"', '"a b"'])
def test_normalize_local_part_refuses_quoted_local_part(local_part: str) -> None:
    with pytest.raises(InvalidLocalPart):
        normalize_local_part(local_part, OURS)


@pytest.mark.parametrize(
    "local_part", ["a b", "a@b", "user@foreign.example", "a..b", ".a", "a.", "a\tb", "a\x00"]
)
def test_normalize_local_part_refuses_invalid_characters_or_dots(local_part: str) -> None:
    with pytest.raises(InvalidLocalPart):
        normalize_local_part(local_part, OURS)


def test_normalize_local_part_error_does_not_mention_the_domain() -> None:
    with pytest.raises(InvalidLocalPart) as caught:
        normalize_local_part("a b", OURS)
    assert OURS not in caught.value.message


@pytest.mark.parametrize(
    "name", ["test", "alias.test", "a.b.local", "x.onion", "4.3.2.1.in-addr.arpa"]
)
def test_refuse_special_use_refuses_names_under_the_list(name: str) -> None:
    with pytest.raises(InvalidDomain, match=r"special-use domain name \(RFC 6761\)"):
        refuse_special_use(name)


@pytest.mark.parametrize("name", ["example.org", "inbox.example", "my.latest", "local.example"])
def test_refuse_special_use_allows_other_names(name: str) -> None:
    refuse_special_use(name)
