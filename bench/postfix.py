"""The yardstick: a private Postfix configured as an alias forwarder to the sink.

``user@bench.example.org`` is a virtual alias (a hash: map built with postmap) for the
same destination mailroute forwards to, and every message leaves through the relayhost,
the sink. Only what running privately as root needs departs from the stock settings: its
own config, queue, data and log directories, nothing chrooted, no DNS, no local delivery,
and a master.cf without the services nothing here uses (tests/peers/postfix_instance.py,
which lays out and runs the tests' Postfix too). Performance settings (process limits,
in_flow_delay, connection caching, fsync of queue files) stay at their defaults.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import processes
from bench.ports import HOST, free_port
from bench.service import DESTINATION, DOMAIN
from tests.peers import postfix_instance

POSTFIX_PROGRAMS = Path("/usr/sbin")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

# What the forwarder does, after what every instance sets (postfix_instance.MAIN_CF).
ROLE_CF = """\
virtual_alias_domains = {domain}
virtual_alias_maps = hash:{root}/etc/virtual
relayhost = [{host}]:{sink_port}
"""
# Its delivery agents: smtp(8), to the relayhost.
AGENTS = """\
smtp       unix  - - n - - smtp
relay      unix  - - n - - smtp
"""


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


def write_instance(
    root: Path, *, port: int, sink_port: int, local_parts: Sequence[str], destination: str
) -> None:
    """Lay out an instance in ``root``: directories owned as Postfix expects, main.cf,
    master.cf and the virtual alias map, built with postmap."""
    role = ROLE_CF.format(root=root, host=HOST, sink_port=sink_port, domain=DOMAIN)
    files = {
        "main.cf": postfix_instance.main_cf(
            root,
            root / "log",
            syslog_name="postfix-mailroute-bench",
            hostname="mx.postfix.example.net",
            role=role,
        ),
        "master.cf": postfix_instance.master_cf(HOST, port, agents=AGENTS),
        "virtual": "".join(f"{lp}@{DOMAIN} {destination}\n" for lp in local_parts),
    }
    postfix_instance.lay_out(root, root / "log", files)
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
    master = postfix_instance.master_program(POSTFIX_PROGRAMS / "postconf")
    server = Postfix(postfix_instance.start_master(master, root, root / "log"), port, root)
    try:
        try:
            postfix_instance.wait_for_greeting(server.master, HOST, port, START_TIMEOUT)
        except postfix_instance.NotStarted as exc:
            raise RuntimeError(
                f"Postfix in {root} did not start ({exc}); see {server.log_file}"
            ) from exc
        yield server
    finally:
        postfix_instance.stop_master(server.master, STOP_TIMEOUT)
