"""A mailroute installation as an operator runs it: `mailroute serve` (or `smtp`, `worker`)
as real processes on one database, relaying to a sink on loopback through the smarthost
setting, so no DNS is involved. Tests kill them with SIGKILL and start them again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select, text

from app.db.engine import create_engine, create_sessionmaker, session_scope
from app.db.models import Base, Delivery, Message
from app.services import aliases, destinations, domains, tokens
from tests.conftest import HOSTNAME
from tests.peers.processes import greeting
from tests.peers.tools import free_port

MAILROUTE = Path(sys.executable).with_name("mailroute")
START_TIMEOUT = 60.0  # imports and migrations on a loaded machine
STOP_TIMEOUT = 30.0
DOMAIN = "example.org"
ALIAS = f"shop@{DOMAIN}"
DESTINATION = "me@inbox.example"
SRS_SECRET = "reliability-srs-secret-0123456789"


def prepare_database(url: str) -> str:
    """Empty the test database (PostgreSQL; a SQLite copy is fresh already), route
    ``ALIAS`` to the verified ``DESTINATION``; an API token's secret."""
    return asyncio.run(_prepare(url))


async def _prepare(url: str) -> str:
    engine = create_engine(url, pooled=False)
    try:
        if engine.dialect.name == "postgresql":
            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            async with engine.begin() as connection:
                await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        async with session_scope(create_sessionmaker(engine)) as session:
            await domains.create_domain(session, DOMAIN)
            await destinations.add_verified_destination(session, DESTINATION)
            await aliases.create_alias(
                session, DOMAIN, local_part="shop", destinations=[DESTINATION]
            )
            return (await tokens.create_token(session, "reliability")).secret
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Claim:
    status: str
    claimed_by: str | None
    claimed_until: datetime | None


def claims(url: str) -> list[Claim]:
    """Every delivery's status and claim, as the workers left them."""

    async def read() -> list[Claim]:
        engine = create_engine(url, pooled=False)
        try:
            query = select(Delivery.status, Delivery.claimed_by, Delivery.claimed_until)
            async with create_sessionmaker(engine)() as session:
                return [Claim(*row) for row in await session.execute(query)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def count_messages(url: str) -> int:
    """Messages stored (a message leaves once every delivery of it is settled)."""

    async def count() -> int:
        engine = create_engine(url, pooled=False)
        try:
            async with engine.connect() as connection:
                query = select(func.count()).select_from(Message)
                return int(await connection.scalar(query) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


class Process:
    """One `mailroute <command>` process; its output goes to ``<directory>/<name>.log``."""

    def __init__(self, name: str, command: str, env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.directory = directory
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def start(self) -> Process:
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                [str(MAILROUTE), self.command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.directory,
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check_alive(self) -> None:
        assert self.alive(), f"{self.name} exited:\n{self.output()[-5000:]}"

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            self.check_alive()
            assert time.monotonic() < deadline, f"{self.name}: no {text!r}:\n{self.output()}"
            time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed by the process."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(STOP_TIMEOUT)

    def reap(self) -> None:
        """Whatever a failed test left running, gone."""
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT)


class Installation:
    """The environment one mailroute installation's processes share."""

    def __init__(self, directory: Path, database_url: str, sink_port: int, **settings: str):
        self.directory = directory
        self.database_url = database_url
        self.smtp_port = free_port()
        self.api_port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROUTE_")}
        self.env |= {
            "MAILROUTE_DATABASE_URL": database_url,
            "MAILROUTE_SMTP_PORT": str(self.smtp_port),
            "MAILROUTE_API_PORT": str(self.api_port),
            "MAILROUTE_HOSTNAME": HOSTNAME,
            "MAILROUTE_SRS_SECRET": SRS_SECRET,
            "MAILROUTE_SMARTHOST": f"127.0.0.1:{sink_port}",
            "MAILROUTE_SMARTHOST_TLS": "none",
            "MAILROUTE_DNS_NAMESERVERS": "127.0.0.1:9",  # never asked: the smarthost is set
            # The senders here publish no SPF or DKIM: what is tested is durability.
            "MAILROUTE_INBOUND_AUTH": "off",
        }
        self.env |= {f"MAILROUTE_{k.upper()}": v for k, v in settings.items()}
        self.processes: list[Process] = []

    def process(self, name: str, command: str) -> Process:
        process = Process(name, command, self.env, self.directory)
        self.processes.append(process)
        return process

    def serve(self, name: str = "serve") -> Process:
        """`mailroute serve`, started and answering on both ports."""
        process = self.process(name, "serve").start()
        self.wait_ready(process)
        return process

    def wait_ready(self, process: Process, *, api: bool = True) -> None:
        """Until the SMTP server greets and (with ``api``) the API answers."""
        deadline = time.monotonic() + START_TIMEOUT
        while not ((not api or self.api_answers()) and greeting("127.0.0.1", self.smtp_port)):
            process.check_alive()
            assert time.monotonic() < deadline, f"{process.name} not up:\n{process.output()}"
            time.sleep(0.05)

    def api_answers(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def reap(self) -> None:
        for process in self.processes:
            process.reap()
