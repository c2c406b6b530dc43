"""The files that make one Postfix instance of its own: main.cf, master.cf, the mailbox map.

Everything Postfix reads or writes is under the instance's root and log directory; all it
shares with the system are its programs and the postfix/postdrop accounts. It only
receives: no DNS, no relaying, and every outbound transport is error(8).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.peers import maildir
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


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-mailroute-test
maillog_file = {log_dir}/maillog
# Postfix writes logs only under listed prefixes (postconf(5) maillog_file_prefixes).
maillog_file_prefixes = {log_dir}

myhostname = {hostname}
mydomain = {hostname}
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
# A listen address other than 127.0.0.1 is named in master.cf; Postfix takes here only
# addresses configured on an interface.
inet_interfaces = loopback-only
inet_protocols = ipv4
relay_domains =
# No permit_mynetworks: not even loopback clients may relay.
smtpd_relay_restrictions = reject_unauth_destination
smtpd_banner = $myhostname ESMTP Postfix (mailroute tests)
smtpd_peername_lookup = no
smtpd_error_sleep_time = 0
in_flow_delay = 0
biff = no
smtputf8_enable = yes
# Clients on loopback would otherwise count as local: Postfix would add Message-ID and
# Date and rewrite address headers, and delivered messages would not be the bytes sent.
local_header_rewrite_clients =
# Without rewriting X-Original-To would only repeat Delivered-To.
enable_original_recipient = no

smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
default_transport = error:5.7.1 this test server only receives
relay_transport = error:5.7.1 this test server only receives
local_transport = error:5.1.1 no local delivery on this test server

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

# master(5): service type private unpriv chroot wakeup maxproc command. Nothing chrooted,
# so no copies of /etc files in the queue directory; no pickup, smtp or local: nothing is
# submitted locally and nothing leaves.
MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
cleanup    unix  n - n - 0 cleanup
qmgr       unix  n - n 300 1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n - - trivial-rewrite
bounce     unix  - - n - 0 bounce
defer      unix  - - n - 0 bounce
trace      unix  - - n - 0 bounce
verify     unix  - - n - 1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n - - proxymap
error      unix  - - n - - error
retry      unix  - - n - - error
discard    unix  - - n - - discard
virtual    unix  - n n - - virtual
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

# Queue directories as post-install would create them ($meta_directory/postfix-files):
# (name, owned by mail_owner, group postdrop, mode).
QUEUE_DIRECTORIES = [
    ("active", True, False, 0o700),
    ("bounce", True, False, 0o700),
    ("corrupt", True, False, 0o700),
    ("defer", True, False, 0o700),
    ("deferred", True, False, 0o700),
    ("flush", True, False, 0o700),
    ("hold", True, False, 0o700),
    ("incoming", True, False, 0o700),
    ("private", True, False, 0o700),
    ("maildrop", True, True, 0o730),
    ("public", True, True, 0o710),
    ("pid", False, False, 0o755),
    ("saved", True, False, 0o700),
    ("trace", True, False, 0o700),
]

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
    """Lay out an instance: directories owned as Postfix expects, its configuration, and
    for STARTTLS a self-signed certificate."""
    mail_owner = pwd.getpwnam("postfix")
    # virtual(8) will not deliver as root; nobody owns the Maildirs.
    nobody = pwd.getpwnam("nobody")
    for name in ("etc", "tls", "queue", "mail"):
        (root / name).mkdir(mode=0o755, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(mode=0o700, exist_ok=True)
    os.chown(root / "data", mail_owner.pw_uid, -1)
    postdrop = grp.getgrnam("postdrop").gr_gid
    for name, owned, setgid_group, mode in QUEUE_DIRECTORIES:
        path = root / "queue" / name
        path.mkdir(exist_ok=True)
        os.chown(path, mail_owner.pw_uid if owned else 0, postdrop if setgid_group else 0)
        os.chmod(path, mode)
    for domain in settings.domains:
        maildir.create_maildir(root / "mail" / domain, nobody.pw_uid, nobody.pw_gid)
    files = {
        "main.cf": main_cf(root, log_dir, settings, nobody.pw_uid, nobody.pw_gid),
        "master.cf": MASTER_CF.format(host=settings.host, port=settings.port),
        "mailboxes.regexp": mailbox_map(settings.domains, settings.mailboxes, settings.refused),
    }
    for name, text in files.items():
        path = root / "etc" / name
        path.write_text(text)
        # Postfix reads a file only once it is over a second old (dict_load_file(3): it
        # might be half written), which would cost two seconds at each start.
        written = time.time() - 60
        os.utime(path, (written, written))
    if settings.tls and not (root / "tls" / "cert.pem").exists():
        write_certificate(root / "tls", settings)


def main_cf(root: Path, log_dir: Path, settings: Settings, uid: int, gid: int) -> str:
    return MAIN_CF.format(
        root=root,
        log_dir=log_dir,
        hostname=settings.hostname,
        domains=", ".join(settings.domains),
        uid=uid,
        gid=gid,
        tls_level="may" if settings.tls else "none",
        certificate=root / "tls" / "cert.pem" if settings.tls else "",
        key=root / "tls" / "key.pem" if settings.tls else "",
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
