"""Settings: MAILROUTE_* environment, .env, defaults, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.api.server import api_rates
from app.config import DnsblZone, Nameserver, SettingsError, load_settings
from app.ratelimit import Rate


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MAILROUTE_* from the outside, and no .env from the working directory."""
    import os

    for name in list(os.environ):
        if name.startswith("MAILROUTE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_settings_defaults() -> None:
    settings = load_settings(hostname="mx.example.org")
    assert settings.database_url == "sqlite+aiosqlite:///./data/mailroute.db"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 2525)
    assert settings.dns_nameservers == []
    assert settings.delivery_port == 25
    assert settings.max_message_size == 25 * 1024 * 1024
    assert settings.public_url == "http://127.0.0.1:8000"


def test_settings_read_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROUTE_API_PORT", "9000")
    monkeypatch.setenv("MAILROUTE_HOSTNAME", "MX.Example.ORG.")
    monkeypatch.setenv("MAILROUTE_PUBLIC_URL", "https://mail.example.org/")
    settings = load_settings()
    assert settings.api_port == 9000
    assert settings.hostname == "mx.example.org"
    assert settings.public_url == "https://mail.example.org"


def test_settings_read_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAILROUTE_SMTP_PORT=2626\nMAILROUTE_DELIVERY_PORT=2727\n")
    settings = load_settings()
    assert (settings.smtp_port, settings.delivery_port) == (2626, 2727)


def test_settings_environment_beats_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAILROUTE_SMTP_PORT=2626\n")
    monkeypatch.setenv("MAILROUTE_SMTP_PORT", "2828")
    assert load_settings().smtp_port == 2828


def test_settings_parse_nameserver_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROUTE_DNS_NAMESERVERS", "127.0.0.1:5353, 10.0.0.1,[::1]:53")
    assert load_settings().dns_nameservers == [
        ("127.0.0.1", 5353),
        ("10.0.0.1", 53),
        ("::1", 53),
    ]


def test_settings_parse_delivery_allowed_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().delivery_allowed_networks == []
    monkeypatch.setenv("MAILROUTE_DELIVERY_ALLOWED_NETWORKS", "127.0.0.0/8, fd00::/8,10.1.2.3")
    assert [str(n) for n in load_settings().delivery_allowed_networks] == [
        "127.0.0.0/8",
        "fd00::/8",
        "10.1.2.3/32",
    ]


def test_settings_refuse_a_bad_delivery_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROUTE_DELIVERY_ALLOWED_NETWORKS", "127.0.0.0/8,lan")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "MAILROUTE_DELIVERY_ALLOWED_NETWORKS" in str(raised.value)
    assert "'lan' is not a network" in str(raised.value)


def test_settings_smarthost_certificate_checked_by_default() -> None:
    settings = load_settings()
    assert (settings.smarthost_tls_verify, settings.smarthost_ca_file) == (True, None)


@pytest.mark.parametrize(
    "text", ["dns.example", "127.0.0.1:0", "127.0.0.1:99999", "[::1", "1.2.3.4:x"]
)
def test_nameserver_parse_refuses_bad_values(text: str) -> None:
    with pytest.raises(ValueError):
        Nameserver.parse(text)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILROUTE_API_PORT", "eighty"),
        ("MAILROUTE_SMTP_PORT", "70000"),
        ("MAILROUTE_DATABASE_URL", "mysql://localhost/db"),
        ("MAILROUTE_DNS_NAMESERVERS", "not-an-ip"),
        ("MAILROUTE_PUBLIC_URL", "mail.example.org"),
        ("MAILROUTE_MAX_MESSAGE_SIZE", "-1"),
        ("MAILROUTE_LOG_LEVEL", "LOUD"),
    ],
)
def test_settings_bad_value_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {variable}: ")
    assert "\n" not in message


def test_settings_delivery_lease_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(hostname="mx.example.org").delivery_lease == 600.0
    monkeypatch.setenv("MAILROUTE_DELIVERY_LEASE", "7.5")
    assert load_settings(hostname="mx.example.org").delivery_lease == 7.5
    monkeypatch.setenv("MAILROUTE_DELIVERY_LEASE", "0")
    with pytest.raises(SettingsError, match="MAILROUTE_DELIVERY_LEASE"):
        load_settings(hostname="mx.example.org")


def test_settings_api_rate_limits_default_to_600_a_minute() -> None:
    settings = load_settings(hostname="mx.example.org")

    assert (settings.api_rate_limit, settings.api_rate_burst) == (600, 120)
    assert settings.api_auth_failure_limit == 30


def test_settings_api_rate_limit_refuses_negative() -> None:
    with pytest.raises(SettingsError, match="MAILROUTE_API_RATE_LIMIT"):
        load_settings(hostname="mx.example.org", api_rate_limit=-1)


def test_api_rates_from_settings() -> None:
    settings = load_settings(hostname="mx.example.org", api_rate_limit=60, api_rate_burst=5)

    assert api_rates(settings) == (Rate(60, 5), Rate(30, 30))


def test_api_rates_zero_turns_a_limit_off() -> None:
    settings = load_settings(hostname="mx.example.org", api_rate_limit=0, api_auth_failure_limit=0)

    assert api_rates(settings) == (None, None)


def test_settings_trusted_proxies_default_to_none() -> None:
    settings = load_settings(hostname="mx.example.org")

    assert settings.trusted_proxies == []
    assert settings.api_max_body_size == 1024 * 1024


def test_settings_trusted_proxies_parse_addresses_and_networks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Host bits in a network are dropped: uvicorn would take "10.0.0.1/8" for a name.
    monkeypatch.setenv("MAILROUTE_TRUSTED_PROXIES", " 127.0.0.1, 10.0.0.1/8,,::1, fd00::/8")

    assert load_settings().trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]


@pytest.mark.parametrize("value", ["proxy.example", "127.0.0.1/33", "*"])
def test_settings_trusted_proxies_refuse_what_is_not_an_address(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MAILROUTE_TRUSTED_PROXIES", value)

    with pytest.raises(SettingsError, match="^invalid setting MAILROUTE_TRUSTED_PROXIES: "):
        load_settings()


def test_settings_api_max_body_size_refuses_tiny_values() -> None:
    with pytest.raises(SettingsError, match="MAILROUTE_API_MAX_BODY_SIZE"):
        load_settings(hostname="mx.example.org", api_max_body_size=10)


def test_settings_dnsbl_default_to_none() -> None:
    assert load_settings().dnsbl == []


def test_settings_dnsbl_parse_zones_and_reply_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MAILROUTE_DNSBL", "zen.spamhaus.org=127.0.0.[2..11], BL.Example.  ,b.test=127.0.0.2"
    )
    zen, plain, exact = load_settings().dnsbl
    assert zen == (
        "zen.spamhaus.org",
        (frozenset({127}), frozenset({0}), frozenset({0}), frozenset(range(2, 12))),
    )
    assert plain == ("bl.example", None)
    assert exact == ("b.test", (frozenset({127}), frozenset({0}), frozenset({0}), frozenset({2})))


def test_dnsbl_zone_parse_lists_and_ranges() -> None:
    assert DnsblZone.parse("b.test=127.0.0.[2;4..5]")[1] == (
        frozenset({127}),
        frozenset({0}),
        frozenset({0}),
        frozenset({2, 4, 5}),
    )


@pytest.mark.parametrize(
    "text",
    [
        "=127.0.0.2",
        "a..b",
        "b.test=127.0.0",
        "b.test=127.0.0.256",
        "b.test=127..0.0.2",
        "b.test=127.0.0.[11..2]",
        "b.test=127.0.0.[2",
        "b.test=127.0.0.[]",
        "b.test=127.0.0.+2",
        "b.test=",
    ],
)
def test_settings_dnsbl_refuse_bad_values(text: str) -> None:
    with pytest.raises(SettingsError, match="MAILROUTE_DNSBL"):
        load_settings(dnsbl=text)


def test_settings_inbound_auth_enforced_by_default() -> None:
    settings = load_settings(hostname="mx.example.org")
    assert settings.inbound_auth == "enforce"
    assert settings.rspamd_url is None and settings.rspamd_failure == "accept"


def test_settings_rspamd_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILROUTE_RSPAMD_URL", "127.0.0.1:11333")
    with pytest.raises(SettingsError, match="http://"):
        load_settings(hostname="mx.example.org")
    monkeypatch.setenv("MAILROUTE_RSPAMD_URL", "http://127.0.0.1:11333/")
    assert load_settings(hostname="mx.example.org").rspamd_url == "http://127.0.0.1:11333"
    monkeypatch.setenv("MAILROUTE_RSPAMD_URL", "")
    assert load_settings(hostname="mx.example.org").rspamd_url is None


def test_settings_signing_defaults() -> None:
    settings = load_settings(hostname="MX.Example.org")
    assert settings.dkim_sign is True
    assert settings.signing_domain == "mx.example.org"
    assert (settings.dkim_selector, settings.dkim_key_file) == (None, None)
    assert settings.dkim_rotation_grace_days == 7


def test_settings_signing_domain_and_selector_normalized() -> None:
    settings = load_settings(
        hostname="mx.example.org", signing_domain="Example.ORG.", dkim_selector="Relay.2026"
    )
    assert (settings.signing_domain, settings.dkim_selector) == ("example.org", "relay.2026")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("signing_domain", "example..org", "must be a domain name such as example.org"),
        ("dkim_selector", "mr_2026", "must be letters, digits and hyphens"),
        ("dkim_selector", "mr.", "must be letters, digits and hyphens"),
        ("dkim_rotation_grace_days", "-1", "greater than or equal to 0"),
    ],
)
def test_settings_signing_bad_values(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"MAILROUTE_{name.upper()}: .*{message}"):
        load_settings(hostname="mx.example.org", **{name: value})


def test_settings_dkim_key_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MAILROUTE_DKIM_KEY_FILE"):
        load_settings(hostname="mx.example.org", dkim_key_file=str(tmp_path / "absent.pem"))


def test_settings_dkim_key_file_must_be_a_usable_key(tmp_path: Path) -> None:
    # Read at start: a bad file stops the service with the reason, not every copy unsigned.
    path = tmp_path / "dkim.pem"
    path.write_text("not a key\n")
    with pytest.raises(SettingsError, match="MAILROUTE_DKIM_KEY_FILE: .*not an unencrypted PEM"):
        load_settings(hostname="mx.example.org", dkim_key_file=str(path))
