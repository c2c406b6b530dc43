"""The one place settings are read: environment (prefix ``MAILROUTE_``) and ``.env``.

Only entry points (the CLI) call :func:`get_settings`; everything below them takes explicit
arguments, so tests build what they need without touching the environment.

Longer than our other modules on purpose: every setting lives here with its parsing and
its checks, so an operator's question "what does MAILROUTE_X accept?" has one answer.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.errors import SigningKeyInvalid
from app.signing.keys import load_pem

MIB = 1024 * 1024
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
SELECTOR = re.compile(rf"{LABEL}(?:\.{LABEL})*")
OCTET_DOT = re.compile(r"\.(?![^\[]*\])")  # a dot between octets, not in a [2..11]


class Nameserver(tuple[str, int]):
    """An ``ip[:port]`` DNS server; IPv6 as ``[::1]:53``."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Nameserver:
        text = text.strip()
        host, port = text, 53
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"{text!r} is not ip[:port]")
            if rest:
                port = _port(rest[1:], text)
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = _port(port_text, text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address with an optional port") from None
        return cls((host, port))

    @property
    def host(self) -> str:
        return self[0]

    @property
    def port(self) -> int:
        return self[1]


class DnsblZone(tuple[str, tuple[frozenset[int], ...] | None]):
    """A DNS blocklist, as Postfix's reject_rbl_client takes it: ``zone``, or
    ``zone=FILTER`` where only replies that match FILTER list a client. Each octet of
    FILTER is a number, a range ``[2..11]`` or a list ``[2;4;6]`` of either."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> DnsblZone:
        zone, sep, pattern = (part.strip() for part in text.strip().partition("="))
        zone = zone.rstrip(".").lower()
        labels = zone.split(".")
        if not zone or any(not label or not label.isascii() or " " in label for label in labels):
            raise ValueError(f"{text.strip()!r} is not a DNS zone such as zen.spamhaus.org")
        octets = tuple(_octet(part) for part in OCTET_DOT.split(pattern)) if sep else None
        if octets is not None and (len(octets) != 4 or not all(octets)):
            raise ValueError(
                f"{text.strip()!r}: a reply filter is an IPv4 address such as 127.0.0.2 "
                "or 127.0.0.[2..11]"
            )
        return cls((zone, octets))


def _octet(text: str) -> frozenset[int]:
    """The values one octet of a reply filter allows; empty when it does not parse."""
    items = text[1:-1].split(";") if text.startswith("[") and text.endswith("]") else [text]
    values: set[int] = set()
    for item in items:
        low, sep, high = item.partition("..")
        bounds = (low, high if sep else low)
        if not all(b.isascii() and b.isdigit() and int(b) < 256 for b in bounds):
            return frozenset()
        values.update(range(int(bounds[0]), int(bounds[1]) + 1))
    return frozenset(values)


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a network such as 10.0.0.0/8") from None


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r} has an invalid port")
    return int(text)


class Settings(BaseSettings):
    """mailroute's settings; each field is ``MAILROUTE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="MAILROUTE_", env_file=".env", extra="ignore", case_sensitive=False
    )

    database_url: str = "sqlite+aiosqlite:///./data/mailroute.db"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
    hostname: str = Field(default_factory=socket.getfqdn)
    dns_nameservers: Annotated[list[Nameserver], NoDecode] = Field(default_factory=list)
    delivery_port: int = Field(default=25, ge=1, le=65535)
    # Networks MX delivery may connect to beyond the globally reachable addresses
    # (comma-separated CIDRs: a LAN, a test rig); empty: none (app.routing.networks).
    delivery_allowed_networks: Annotated[
        list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode
    ] = Field(default_factory=list)
    max_message_size: int = Field(default=25 * MIB, ge=1024)
    public_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    tls_cert_file: FilePath | None = None
    tls_key_file: FilePath | None = None
    srs_secret: str | None = Field(default=None, min_length=16)
    tls_policy: Literal["opportunistic", "require"] = "opportunistic"
    smarthost: str | None = None
    smarthost_username: str | None = None
    smarthost_password: str | None = None
    smarthost_tls: Literal["starttls", "implicit", "none"] = "starttls"
    # Check the smarthost's certificate against its name (system CAs, plus this file's).
    smarthost_tls_verify: bool = True
    smarthost_ca_file: FilePath | None = None
    inline_delivery_timeout: float = Field(default=15.0, ge=0, le=300)
    queue_lifetime: timedelta = timedelta(days=5)
    activity_retention_days: int = Field(default=30, ge=1)
    shutdown_timeout: float = Field(default=30.0, ge=0, le=3600)
    # Processes taking SMTP sessions under `serve`, sharing the port (SO_REUSEPORT); one
    # Python process uses one core. Unset: on PostgreSQL one per CPU but one, left to the
    # delivery worker and the database (on a small machine more SMTP processes can forward
    # less, not more: bench/forwarding.py measures it); one on SQLite (its single writer
    # lock makes more processes wait for each other, not go faster).
    smtp_processes: int | None = Field(default=None, ge=1, le=64)

    @property
    def smtp_process_count(self) -> int:
        if self.smtp_processes is not None:
            return self.smtp_processes
        if self.database_url.startswith("sqlite"):
            return 1
        return max(1, (os.cpu_count() or 1) - 1)

    # Seconds a worker's claim on a delivery lasts; a worker killed mid-delivery holds it
    # that long before another worker (on PostgreSQL) takes the delivery over.
    delivery_lease: float = Field(default=600.0, ge=1, le=86400)
    # Postfix's anvil default: 50 concurrent sessions per client address.
    max_connections_per_ip: int = Field(default=50, ge=1)
    max_connections: int = Field(default=1000, ge=1)
    # MAIL commands per minute from one client address; 0: no limit (anvil's default, as
    # big providers send much from few addresses).
    max_messages_per_ip: int = Field(default=0, ge=0)
    # Postfix's smtpd_timeout, smtpd_min_data_rate and smtpd_hard_error_limit.
    smtp_timeout: float = Field(default=300.0, gt=0, le=3600)
    smtp_min_data_rate: int = Field(default=500, ge=0)
    smtp_error_limit: int = Field(default=20, ge=1)
    # Octets of message text all SMTP sessions of one process may hold in memory at once;
    # past it DATA hears 452 4.3.1 (app.smtp.limits.MemoryBudget).
    max_inflight_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    # API rate limits, kept in each node's memory: requests per minute per token, with a
    # burst, and failed authentications per minute per client address. 0 turns one off.
    api_rate_limit: int = Field(default=600, ge=0)
    api_rate_burst: int = Field(default=120, ge=1)
    api_auth_failure_limit: int = Field(default=30, ge=0)
    # Where mail for <postmaster> and postmaster@HOSTNAME goes (RFC 5321 4.5.1 requires
    # a server to accept it): the operator's own address. Unset: such mail is refused.
    postmaster: str | None = None
    # Reverse proxies whose X-Forwarded-For names the API's client (uvicorn's
    # forwarded_allow_ips); from any other peer the header is ignored. Empty: none.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Largest API request body; past it 413, before the body is read.
    api_max_body_size: int = Field(default=MIB, ge=1024)
    # DNS blocklists asked at connect (app.smtp.blocklists); empty: none.
    dnsbl: Annotated[list[DnsblZone], NoDecode] = Field(default_factory=list)
    # SPF, DKIM, DMARC and ARC on the way in (app.inbound_auth): enforce refuses what fails
    # (app.inbound_auth.policy), record only writes the verdicts, off checks nothing.
    inbound_auth: Literal["enforce", "record", "off"] = "enforce"
    # Seconds one DNS query of these checks may take; past it the check is a temperror.
    inbound_auth_dns_timeout: float = Field(default=5.0, gt=0, le=60)
    # rspamd's normal worker (its /checkv2 protocol), e.g. http://127.0.0.1:11333; unset:
    # no content filter. When it cannot be asked: accept (logged) or tempfail (451).
    rspamd_url: str | None = None
    rspamd_password: str | None = None
    rspamd_failure: Literal["accept", "tempfail"] = "accept"
    rspamd_timeout: float = Field(default=15.0, gt=0, le=300)
    # Our own DKIM signature on every forwarded copy, beside the ARC seal (app.signing).
    dkim_sign: bool = True
    # The ARC seal (RFC 8617) on every forwarded copy the inbound checks saw (app.signing).
    arc_seal: bool = True
    # The d= of our signature and seal; unset: HOSTNAME (README's Deliverability).
    signing_domain: str = ""
    # The selector; unset: dated, "mr" and the year and month the key was made (mr202612),
    # so a rotation publishes beside the old record rather than over it.
    dkim_selector: str | None = None
    # A PEM RSA private key (1024 bits or more) used instead of the one generated and
    # shared through the database; its selector is DKIM_SELECTOR, or the dated one.
    dkim_key_file: FilePath | None = None
    # Days a rotated-out key's record stays listed to publish: mail signed just before a
    # rotation may still be on its way, and is verified against that record.
    dkim_rotation_grace_days: int = Field(default=7, ge=0, le=365)

    @property
    def dkim_rotation_grace(self) -> timedelta:
        return timedelta(days=self.dkim_rotation_grace_days)

    @field_validator("dkim_key_file")
    @classmethod
    def _usable_key(cls, value: Path | None) -> Path | None:
        # Read at start, so that a bad file stops the service at once rather than leaving
        # every copy unsigned and the DNS listings answering 400.
        if value is not None:
            try:
                load_pem(value, None, datetime.now(UTC))
            except SigningKeyInvalid as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, value: str | None) -> str | None:
        if value:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be host:port, such as smtp.example.net:587")
        return value or None

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
        return self

    @field_validator("postmaster")
    @classmethod
    def _postmaster(cls, value: str | None) -> str | None:
        if not value:
            return None
        local, at, domain = value.strip().rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in value.strip()):
            raise ValueError("must be an email address such as postmaster@example.org")
        return value.strip()

    @model_validator(mode="after")
    def _budget_holds_a_message(self) -> Settings:
        if self.max_inflight_bytes < self.max_message_size:
            raise ValueError("MAX_INFLIGHT_BYTES must be at least MAX_MESSAGE_SIZE")
        return self

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if scheme not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("rspamd_url")
    @classmethod
    def _rspamd_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// URL such as http://127.0.0.1:11333")
        return value.rstrip("/")

    @field_validator("dns_nameservers", mode="before")
    @classmethod
    def _split_nameservers(cls, value: object) -> object:
        if isinstance(value, str):
            return [Nameserver.parse(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("dnsbl", mode="before")
    @classmethod
    def _split_dnsbl(cls, value: object) -> object:
        if isinstance(value, str):
            return [DnsblZone.parse(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list):
            return value
        # Written as uvicorn parses them: it takes a network with host bits set
        # (10.0.0.1/8) for a name that never matches, so such a typo would trust no one.
        try:
            return [
                str(
                    ipaddress.ip_network(item, strict=False)
                    if "/" in item
                    else ipaddress.ip_address(item)
                )
                for item in (str(part).strip() for part in value)
                if item
            ]
        except ValueError as exc:
            raise ValueError(
                f"must be comma-separated IP addresses or CIDR networks: {exc}"
            ) from None

    @field_validator("delivery_allowed_networks", mode="before")
    @classmethod
    def _split_allowed_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [_network(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if not value or any(not label for label in value.split(".")):
            raise ValueError("must be a host name such as mx.example.org")
        return value

    @field_validator("signing_domain")
    @classmethod
    def _signing_domain(cls, value: str) -> str:
        value = value.strip().rstrip(".").lower()
        if value and (any(not label for label in value.split(".")) or " " in value):
            raise ValueError("must be a domain name such as example.org")
        return value

    @model_validator(mode="after")
    def _signing_domain_default(self) -> Settings:
        if not self.signing_domain:
            self.signing_domain = self.hostname
        return self

    @field_validator("dkim_selector")
    @classmethod
    def _dkim_selector(cls, value: str | None) -> str | None:
        # RFC 6376 3.1: a selector is one or more dot-separated labels.
        if value is not None and not SELECTOR.fullmatch(value.strip()):
            raise ValueError("must be letters, digits and hyphens (dots between labels)")
        return value.strip().lower() if value else None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://mail.example.org")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value


class SettingsError(Exception):
    """A setting has a bad value; ``str()`` is one line naming it."""


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one line per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = "_".join(str(p) for p in error["loc"][:1]).upper() or "TLS_KEY_FILE"
            lines.append(f"invalid setting MAILROUTE_{field}: {error['msg']}")
        raise SettingsError("; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
