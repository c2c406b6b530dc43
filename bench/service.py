"""A real ``mailroute serve`` for the benchmarks: its database, its provisioning, its process.

The programs are the console scripts next to ``sys.executable``, so a bench measures the
checkout whose venv runs it. Every instance gets a work directory of its own (also its
current directory, so no stray ``.env`` is read) and listens on free loopback ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench import processes
from bench.ports import HOST, free_port, smtp_greets
from bench.processes import peak_rss_kib, rss_kib

__all__ = [
    "DESTINATION",
    "DOMAIN",
    "Mailroute",
    "free_port",
    "peak_rss_kib",
    "provision",
    "reset_database",
    "rss_kib",
    "running",
]

MAILROUTE = Path(sys.executable).parent / "mailroute"
DOMAIN = "bench.example.org"
DESTINATION = "inbox@sink.example.com"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass
class Mailroute:
    """A running ``mailroute serve`` and where to reach it."""

    process: subprocess.Popen[bytes]
    smtp_port: int
    api_port: int
    database_url: str
    workdir: Path

    def pids(self) -> list[int]:
        """The serve process and any children it started."""
        return processes.descendants(self.process.pid)

    @property
    def log_file(self) -> Path:
        return self.workdir / "serve.log"


def reset_database(kind: str, pg_url: str, workdir: Path) -> str:
    """A database with an empty schema: a new SQLite file in ``workdir``, or the database
    named in ``pg_url`` dropped and created again. Returns its URL for mailroute."""
    if kind == "sqlite":
        path = workdir.resolve() / "mailroute.db"
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        return f"sqlite+aiosqlite:///{path}"
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}: sqlite or postgresql")
    name = urlsplit(pg_url).path.lstrip("/")
    if not name.replace("_", "").isalnum():
        raise ValueError(f"{pg_url}: a database name of letters, digits and _ please")
    # FORCE ends sessions a previous, interrupted run may have left (PostgreSQL 13+).
    psql(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(pg_url, f"CREATE DATABASE {name}")
    return pg_url


def psql(pg_url: str, statement: str) -> str:
    """Run one statement with psql against the maintenance database of ``pg_url``'s server."""
    parts = urlsplit(pg_url)
    command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
    command += ["-h", parts.hostname or HOST, "-p", str(parts.port or 5432)]
    command += ["-U", parts.username or "postgres", "-c", statement]
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"psql {statement!r} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def backend_pids(pg_url: str) -> list[int]:
    """PostgreSQL's server processes serving connections to ``pg_url``'s database: part of
    what mailroute costs on PostgreSQL."""
    name = urlsplit(pg_url).path.lstrip("/")
    query = f"SELECT pid FROM pg_stat_activity WHERE datname = '{name}'"
    return [int(pid) for pid in psql(pg_url, query).split()]


def settings_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a mailroute command: ours without MAILROUTE_* settings, then
    the bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROUTE_")}
    env |= {
        "MAILROUTE_DATABASE_URL": database_url,
        "MAILROUTE_HOSTNAME": "mx.bench.example.net",
        "MAILROUTE_LOG_LEVEL": "WARNING",
        # The bench's senders publish no SPF or DKIM unless a bench publishes them and
        # turns the checks on (bench/README.md).
        "MAILROUTE_INBOUND_AUTH": "off",
        # Nor do they sign: the figures of the forwarding, large, routing and api parts
        # stay comparable with those from before signing existed (issue 14). The signing
        # part turns both on for one of its servers.
        "MAILROUTE_DKIM_SIGN": "false",
        "MAILROUTE_ARC_SEAL": "false",
    }
    return env | (extra or {})


def mailroute_command(args: Sequence[str], env: dict[str, str], workdir: Path) -> str:
    done = subprocess.run(
        [str(MAILROUTE), *args], env=env, cwd=workdir, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"mailroute {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def provision(
    database_url: str,
    workdir: Path,
    *,
    domains: Sequence[str] = (DOMAIN,),
    local_parts: Sequence[str] = ("user",),
    destination: str = DESTINATION,
    extra_env: dict[str, str] | None = None,
) -> None:
    """Migrate, then through the CLI: each domain, the verified destination, and an alias
    ``local_part@domain`` forwarding to it for each domain and local part."""
    env = settings_env(database_url, extra_env)
    mailroute_command(["migrate"], env, workdir)
    mailroute_command(["destination", "add", "--verified", destination], env, workdir)
    for domain in domains:
        mailroute_command(["domain", "add", domain], env, workdir)
        for local_part in local_parts:
            mailroute_command(
                ["alias", "add", domain, local_part, "--to", destination], env, workdir
            )


@contextlib.contextmanager
def running(
    database_url: str,
    workdir: Path,
    *,
    smarthost: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Mailroute]:
    """``mailroute serve`` relaying everything to ``smarthost`` (host:port, plain SMTP),
    queue-only unless ``extra_env`` says otherwise; stopped with SIGTERM on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    smtp_port, api_port = free_port(), free_port()
    env = settings_env(
        database_url,
        {
            "MAILROUTE_SMTP_HOST": HOST,
            "MAILROUTE_SMTP_PORT": str(smtp_port),
            "MAILROUTE_API_HOST": HOST,
            "MAILROUTE_API_PORT": str(api_port),
            "MAILROUTE_PUBLIC_URL": f"http://{HOST}:{api_port}",
            "MAILROUTE_SMARTHOST": smarthost,
            "MAILROUTE_SMARTHOST_TLS": "none",
            # The load comes from one address: the per-client limit must not refuse it.
            "MAILROUTE_MAX_CONNECTIONS_PER_IP": "1000",
            # Accept into the queue and let the worker deliver, like Postfix's smtpd.
            "MAILROUTE_INLINE_DELIVERY_TIMEOUT": "0",
        }
        | (extra_env or {}),
    )
    with open(workdir / "serve.log", "ab") as log:
        process = subprocess.Popen(
            [str(MAILROUTE), "serve"],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Mailroute(process, smtp_port, api_port, database_url, workdir)
    try:
        wait_until_ready(server)
        yield server
    finally:
        stop(server)


def wait_until_ready(server: Mailroute, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not (smtp_greets(server.smtp_port) and api_healthy(server.api_port)):
        if server.process.poll() is not None or time.monotonic() > deadline:
            what = "exited" if server.process.poll() is not None else f"not ready in {timeout} s"
            raise RuntimeError(f"mailroute serve {what}:\n{tail(server.log_file)}")
        time.sleep(0.1)


def api_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=5) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def stop(server: Mailroute, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (mailroute finishes its sessions and deliveries), SIGKILL after ``timeout``."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)
    # Anything the serve process started goes with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"({path} is missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
