"""The yardstick: a private Postfix configured as an alias forwarder to the sink.

``user@bench.example.org`` is a virtual alias (a hash: map built with postmap) for the
same destination mailroute forwards to, and every message leaves through the relayhost,
the sink. Only what running privately as root needs departs from the stock settings: its
own config, queue, data and log directories, nothing chrooted, no DNS, no local delivery,
and a master.cf without the services nothing here uses. Performance settings (process
limits, in_flow_delay, connection caching, fsync of queue files) stay at their defaults.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import processes
from bench.ports import HOST, free_port, smtp_greets
from bench.service import DESTINATION, DOMAIN

POSTFIX_PROGRAMS = Path("/usr/sbin")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-mailroute-bench
# No syslog here: postlogd(8) writes the log (postconf(5) maillog_file).
maillog_file = {root}/log/maillog
maillog_file_prefixes = {root}/log

myhostname = mx.postfix.example.net
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:5.1.1 no local delivery here
inet_interfaces = loopback-only
inet_protocols = ipv4
biff = no

virtual_alias_domains = {domain}
virtual_alias_maps = hash:{root}/etc/virtual
relayhost = [{host}]:{sink_port}
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
"""

# master(5) entries of a stock master.cf with chroot off; no pickup, local, virtual or
# showq: nothing is submitted or delivered locally.
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
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
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


@dataclass
class Postfix:
    master: subprocess.Popen[bytes]
    port: int
    root: Path

    def pids(self) -> list[int]:
        """The master and its daemons: master(8) runs them in its process group."""
        return processes.in_group(self.master.pid)

    def cpu_seconds(self) -> float:
        """CPU time of the live processes, plus the daemons that exited (in the master's
        children's times once it reaped them)."""
        return processes.cpu_seconds(self.pids())

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "maillog"


def daemon_directory() -> Path:
    done = subprocess.run(
        [str(POSTFIX_PROGRAMS / "postconf"), "-dh", "daemon_directory"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())


def write_instance(
    root: Path, *, port: int, sink_port: int, local_parts: Sequence[str], destination: str
) -> None:
    """Lay out an instance in ``root``: directories owned as Postfix expects, main.cf,
    master.cf and the virtual alias map, built with postmap."""
    # Postfix's daemons run as the postfix user and must reach the queue below root.
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    root.chmod(0o711)
    mail_owner = pwd.getpwnam("postfix").pw_uid
    postdrop = grp.getgrnam("postdrop").gr_gid
    for name in ("etc", "queue", "log"):
        (root / name).mkdir(mode=0o755, exist_ok=True)
    (root / "data").mkdir(mode=0o700, exist_ok=True)
    os.chown(root / "data", mail_owner, -1)
    for name, owned, setgid_group, mode in QUEUE_DIRECTORIES:
        path = root / "queue" / name
        path.mkdir(exist_ok=True)
        os.chown(path, mail_owner if owned else 0, postdrop if setgid_group else 0)
        os.chmod(path, mode)
    values = {"root": root, "host": HOST, "port": port, "sink_port": sink_port, "domain": DOMAIN}
    files = {
        "main.cf": MAIN_CF.format(**values),
        "master.cf": MASTER_CF.format(**values),
        "virtual": "".join(f"{lp}@{DOMAIN} {destination}\n" for lp in local_parts),
    }
    for name, text in files.items():
        path = root / "etc" / name
        path.write_text(text)
        # Postfix ignores a file younger than a second (dict_load_file(3): it might be half
        # written), which would cost a second or two at start.
        written = time.time() - 60
        os.utime(path, (written, written))
    etc = str(root / "etc")
    subprocess.run(
        [str(POSTFIX_PROGRAMS / "postmap"), "-c", etc, f"hash:{etc}/virtual"],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def running_postfix(
    root: Path,
    *,
    sink_port: int,
    local_parts: Sequence[str] = ("user",),
    destination: str = DESTINATION,
) -> Iterator[Postfix]:
    """A Postfix in ``root`` on a free loopback port relaying to the sink; stopped, with
    every daemon it started, on the way out."""
    port = free_port()
    write_instance(
        root, port=port, sink_port=sink_port, local_parts=local_parts, destination=destination
    )
    with open(root / "log" / "master.out", "ab") as output:
        master = subprocess.Popen(
            # -d: stay in the foreground, our child, leading a new process group.
            [str(daemon_directory() / "master"), "-c", str(root / "etc"), "-d"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Postfix(master, port, root)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not smtp_greets(port):
            if master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Postfix in {root} did not start; see {server.log_file}")
            time.sleep(0.05)
        yield server
    finally:
        stop(server)


def stop(server: Postfix) -> None:
    """SIGTERM to the master, which passes it on to its process group; SIGKILL whatever
    is left after STOP_TIMEOUT."""
    group = server.master.pid
    if server.master.poll() is None:
        server.master.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    while processes.in_group(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    server.master.wait(STOP_TIMEOUT)
