"""A Postfix instance of its own, as the tests (``postfix_config``) and the benchmark
(``bench/postfix.py``) run one; each adds its role to main.cf and master.cf.

Everything the instance reads or writes is under its root, its log in a directory the
caller names; all it shares with the system are its programs and the postfix/postdrop
accounts. Nothing is chrooted, nothing looks up DNS, nothing is delivered locally. Its
master(8) runs as our child in the foreground, leading a process group its daemons join.

No pytest here: ``python -m bench`` imports this module too.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from tests.peers.processes import end_group, greeting

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = {syslog_name}
# No syslog: postlogd(8) writes the log (postconf(5) maillog_file), and only under the
# listed prefixes (maillog_file_prefixes).
maillog_file = {log_dir}/maillog
maillog_file_prefixes = {log_dir}

myhostname = {hostname}
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 no local delivery here
# A listen address other than 127.0.0.1 is named in master.cf; Postfix takes here only
# addresses configured on an interface.
inet_interfaces = loopback-only
inet_protocols = ipv4
biff = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native

"""

# master(5): service type private unpriv chroot wakeup maxproc command. The services of a
# stock master.cf with chroot off that every instance needs; no pickup, local or showq:
# nothing is submitted or delivered locally. A role adds its delivery agents.
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
anvil      unix  - - n - 1 anvil
scache     unix  - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""

# Queue directories as post-install creates them ($meta_directory/postfix-files):
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


class NotStarted(RuntimeError):
    """The instance did not greet: its master exited, or no 220 came in time."""


def main_cf(root: Path, log_dir: Path, *, syslog_name: str, hostname: str, role: str) -> str:
    """main.cf: what every instance sets, then ``role``, the settings of what it does."""
    common = MAIN_CF.format(root=root, log_dir=log_dir, syslog_name=syslog_name, hostname=hostname)
    return common + role


def master_cf(host: str, port: int, *, agents: str) -> str:
    """master.cf: smtpd on ``host:port`` and the common services, then ``agents``."""
    return MASTER_CF.format(host=host, port=port) + agents


def lay_out(root: Path, log_dir: Path, files: Mapping[str, str]) -> None:
    """Make ``root`` an instance: its directories owned as Postfix expects, and ``files``
    (main.cf, master.cf, lookup tables) in ``root/etc``."""
    # Postfix's daemons run as the postfix user and must reach the queue below root.
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    root.chmod(0o711)
    mail_owner = pwd.getpwnam("postfix").pw_uid
    postdrop = grp.getgrnam("postdrop").gr_gid
    for name in ("etc", "queue"):
        (root / name).mkdir(mode=0o755, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(mode=0o700, exist_ok=True)
    os.chown(root / "data", mail_owner, -1)
    for name, owned, setgid_group, mode in QUEUE_DIRECTORIES:
        path = root / "queue" / name
        path.mkdir(exist_ok=True)
        os.chown(path, mail_owner if owned else 0, postdrop if setgid_group else 0)
        os.chmod(path, mode)
    for name, text in files.items():
        path = root / "etc" / name
        path.write_text(text)
        # Postfix reads a file only once it is over a second old (dict_load_file(3): it
        # might be half written), which would cost a second or two at each start.
        written = time.time() - 60
        os.utime(path, (written, written))


def master_program(postconf: str | Path) -> Path:
    """master(8), from the daemon directory ``postconf`` names."""
    done = subprocess.run(
        [str(postconf), "-dh", "daemon_directory"], capture_output=True, text=True, check=True
    )
    return Path(done.stdout.strip()) / "master"


def start_master(master: Path, root: Path, log_dir: Path) -> subprocess.Popen[bytes]:
    """Start the instance's master(8); what it prints goes to ``log_dir/master.out``."""
    with open(log_dir / "master.out", "ab") as output:
        return subprocess.Popen(
            # -d: stay in the foreground, a child of ours, leading the new session.
            [str(master), "-c", str(root / "etc"), "-d"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for_greeting(
    master: subprocess.Popen[bytes], host: str, port: int, timeout: float
) -> None:
    """Wait until smtpd on ``host:port`` greets with 220; NotStarted if ``master`` exits,
    the wait runs past ``timeout`` or the greeting is another."""
    deadline = time.monotonic() + timeout
    while (line := greeting(host, port)) is None:
        if master.poll() is not None:
            raise NotStarted("exited")
        if time.monotonic() > deadline:
            raise NotStarted(f"no 220 within {timeout} s")
        time.sleep(0.05)
    if not line.startswith(b"220 "):
        raise NotStarted(f"greeted with {line!r}")


def stop_master(master: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop ``master`` and every daemon it started, killing what outlives ``timeout``."""
    # master(8) passes SIGTERM on to its process group, then exits.
    master.terminate()
    end_group(master.pid, timeout)
    master.wait(timeout)
