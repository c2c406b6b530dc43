"""`mailroute serve` as an operator runs it: a real process configured by the `mailroute`
command, mail sent with swaks, relayed through dnsmasq's MX to Postfix, and SIGTERM."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import CLIENT_NAME, message, stored
from tests.integration.service import Service
from tests.peers.dnsmasq import Dnsmasq
from tests.peers.postfix import Postfix
from tests.peers.tools import require_tool

pytestmark = [pytest.mark.postfix, pytest.mark.dnsmasq]

SENDER = "alice@sender.example"


@pytest.fixture
def service(tmp_path: Path, dnsmasq: Dnsmasq) -> Iterator[Service]:
    service = Service(tmp_path, dnsmasq)
    yield service
    service.kill()


def forwarded(service: Service, token: str, alias: str) -> list[dict[str, object]]:
    """The API's activity rows for ``alias`` with status forwarded, polled briefly: the
    worker records its outcome once the destination's reply is in."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(
            f"{service.api_url}/v1/activity",
            params={"address": alias, "status": "forwarded"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, object]] = response.json()["items"]
        if items or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def test_serve_forwards_mail_end_to_end_and_stops_on_sigterm(
    service: Service, postfix: Postfix, tmp_path: Path
) -> None:
    destination = postfix.mailbox("served")
    alias = "shop@example.org"
    service.run("migrate")
    service.run("domain", "add", "example.org")
    service.run("destination", "add", destination, "--verified")
    service.run("alias", "add", "example.org", "shop", "--to", destination)
    token = service.run("token", "create", "--name", "integration").strip().splitlines()[-1]
    sent = message(SENDER, alias, "Through the real service")
    (tmp_path / "message.eml").write_bytes(sent.removesuffix(b"\r\n"))  # swaks adds it back
    service.serve()

    swaks = subprocess.run(
        [
            require_tool("swaks", "swaks"),
            *("--server", "127.0.0.1", "--port", str(service.smtp_port), "--helo", CLIENT_NAME),
            *("--from", SENDER, "--to", alias, "--data", f"@{tmp_path / 'message.eml'}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert swaks.returncode == 0, swaks.stdout
    [delivered] = postfix.wait_for(destination)
    assert delivered.endswith(stored(sent))
    [row] = forwarded(service, token, alias)
    assert (row["destination"], row["remote_host"]) == (
        destination,
        f"{postfix.settings.hostname}[{postfix.host}]",
    )
    assert str(row["reply"]).startswith("250 2.0.0 Ok: queued as ")
    assert service.stop() == 0, service.log.read_text()
