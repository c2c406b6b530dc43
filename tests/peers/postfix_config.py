"""The test instance's part of its files (postfix_instance lays out the rest): what it
accepts, the mailbox map, the Maildirs it delivers to, and STARTTLS.

It only receives: no relaying, and every outbound transport is error(8).
"""

from __future__ import annotations

import pwd
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.peers import maildir, postfix_instance
from tests.peers.tools import require_tool


@dataclass(frozen=True)
class Settings:
    """What a test chooses about an instance; ``Postfix.__init__`` documents each."""

    host: str
    port: int
    hostname: str
    domains: tuple[str, ...]
    mailboxes: tuple[str, ...] | None
    refused: tuple[str, ...]
    tls: bool


# What a test instance does, after what every instance sets (postfix_instance.MAIN_CF).
ROLE_CF = """\
mydomain = {hostname}
myorigin = $myhostname
relay_domains =
# No permit_mynetworks: not even loopback clients may relay.
smtpd_relay_restrictions = reject_unauth_destination
smtpd_banner = $myhostname ESMTP Postfix (mailroute tests)
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
in_flow_delay = 0
smtputf8_enable = yes
# Clients on loopback would otherwise count as local: Postfix would add Message-ID and
# Date and rewrite address headers, and delivered messages would not be the bytes sent.
local_header_rewrite_clients =
# Without rewriting X-Original-To would only repeat Delivered-To.
enable_original_recipient = no

default_transport = error:5.7.1 this test server only receives
relay_transport = error:5.7.1 this test server only receives

virtual_mailbox_domains = {domains}
virtual_mailbox_maps = regexp:{root}/etc/mailboxes.regexp
virtual_mailbox_base = {root}/mail
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_transport = virtual

smtpd_tls_security_level = {tls_level}
smtpd_tls_cert_file = {certificate}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 1
"""
# The one delivery agent: virtual(8), into the Maildirs. No smtp: nothing leaves.
AGENTS = "virtual    unix  - n n - - virtual\n"

_REGEXP_SPECIAL = set(".^$*+?()[]{}|\\/")


def regexp_literal(text: str) -> str:
    """``text`` as a POSIX extended regular expression matching just itself, safe between
    the ``/`` delimiters of a regexp_table(5) pattern."""
    if any(c in text for c in "\r\n"):
        raise ValueError(f"{text!r}: no line breaks in a lookup table")
    return "".join(f"\\{c}" if c in _REGEXP_SPECIAL else c for c in text)


def mailbox_map(
    domains: Sequence[str], mailboxes: Sequence[str] | None, refused: Sequence[str]
) -> str:
    """virtual_mailbox_maps as a regexp table: each accepted address maps to its domain's
    Maildir (``domain/``), anything else is "User unknown in virtual mailbox table", which
    smtpd refuses at RCPT with 550 5.1.1.

    With ``mailboxes`` None every address in the domains is accepted except ``refused``.
    virtual(8) forbids ``$1`` in this map, so one Maildir per domain it is.
    """
    if mailboxes is not None:
        lines = [f"/^{regexp_literal(a)}$/ {maildir_name(a)}" for a in mailboxes]
        return "\n".join(lines) + "\n"
    lines = [f"/@{regexp_literal(d)}$/ {d.lower()}/" for d in domains]
    if refused:
        # regexp_table(5): lines between "if !/pattern/" and "endif" apply when it does not match.
        alternatives = "|".join(regexp_literal(a) for a in refused)
        lines = [f"if !/^({alternatives})$/", *lines, "endif"]
    return "\n".join(lines) + "\n"


def maildir_name(address: str) -> str:
    return address.rpartition("@")[2].lower() + "/"


def write_instance(root: Path, log_dir: Path, settings: Settings) -> None:
    """Lay out an instance: its directories and configuration, a Maildir per domain, and
    for STARTTLS a self-signed certificate."""
    # virtual(8) will not deliver as root; nobody owns the Maildirs.
    nobody = pwd.getpwnam("nobody")
    files = {
        "main.cf": main_cf(root, log_dir, settings, nobody.pw_uid, nobody.pw_gid),
        "master.cf": postfix_instance.master_cf(settings.host, settings.port, agents=AGENTS),
        "mailboxes.regexp": mailbox_map(settings.domains, settings.mailboxes, settings.refused),
    }
    postfix_instance.lay_out(root, log_dir, files)
    for name in ("tls", "mail"):
        (root / name).mkdir(mode=0o755, exist_ok=True)
    for domain in settings.domains:
        maildir.create_maildir(root / "mail" / domain, nobody.pw_uid, nobody.pw_gid)
    if settings.tls and not (root / "tls" / "cert.pem").exists():
        write_certificate(root / "tls", settings)


def main_cf(root: Path, log_dir: Path, settings: Settings, uid: int, gid: int) -> str:
    role = ROLE_CF.format(
        root=root,
        hostname=settings.hostname,
        domains=", ".join(settings.domains),
        uid=uid,
        gid=gid,
        tls_level="may" if settings.tls else "none",
        certificate=root / "tls" / "cert.pem" if settings.tls else "",
        key=root / "tls" / "key.pem" if settings.tls else "",
    )
    return postfix_instance.main_cf(
        root, log_dir, syslog_name="postfix-mailroute-test", hostname=settings.hostname, role=role
    )


def write_certificate(directory: Path, settings: Settings) -> None:
    """A self-signed P-256 certificate for the hostname and the listen address."""
    subprocess.run(
        [
            require_tool("openssl", "openssl"),
            *("req", "-x509", "-nodes", "-days", "2", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")),
            *("-subj", f"/CN={settings.hostname}"),
            *("-addext", f"subjectAltName=DNS:{settings.hostname},IP:{settings.host}"),
        ],
        check=True,
        capture_output=True,
    )
