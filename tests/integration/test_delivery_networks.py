"""`mailroute serve` does not deliver where DNS points inward: a destination domain whose MX
or address is on loopback (served by dnsmasq) gets no connection from us, unless the
operator allows the network with MAILROUTE_DELIVERY_ALLOWED_NETWORKS.

A recording SMTP sink listens on 127.0.0.1, on the port delivery uses: whatever reaches it
is mail this server should not have sent.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.delivery.sink import Sink
from tests.integration.conftest import CLIENT_NAME, message
from tests.integration.service import Service
from tests.peers.dnsmasq import Dnsmasq, Zone

pytestmark = pytest.mark.dnsmasq

SENDER = "alice@sender.example"
ALIAS = "shop@example.org"
MX_ON_LOOPBACK = "me@loops.example"  # MX localhost.loops.example, A 127.0.0.1
ADDRESS_ON_LOOPBACK = "you@bare-loop.example"  # no MX, A 127.0.0.1


@pytest.fixture
def dnsmasq_zone() -> Zone:
    return Zone(
        local_domains=["loops.example", "bare-loop.example"],
        mx=[("loops.example", "localhost.loops.example", 10)],
        hosts=[("localhost.loops.example", "127.0.0.1"), ("bare-loop.example", "127.0.0.1")],
    )


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


def started(directory: Path, dnsmasq: Dnsmasq, sink: Sink, allowed: str | None) -> Service:
    """serve, delivering to the sink's port, with an alias forwarding to MX_ON_LOOPBACK."""
    service = Service(directory, dnsmasq)
    service.env["MAILROUTE_DELIVERY_PORT"] = str(sink.port)
    del service.env["MAILROUTE_DELIVERY_ALLOWED_NETWORKS"]
    if allowed is not None:
        service.env["MAILROUTE_DELIVERY_ALLOWED_NETWORKS"] = allowed
    service.run("migrate")
    service.run("domain", "add", "example.org")
    service.run("destination", "add", MX_ON_LOOPBACK, "--verified")
    service.run("alias", "add", "example.org", "shop", "--to", MX_ON_LOOPBACK)
    service.serve()
    return service


@pytest.fixture
def make_service(tmp_path: Path, dnsmasq: Dnsmasq, sink: Sink) -> Iterator[Callable[..., Service]]:
    services: list[Service] = []

    def make(allowed: str | None = None) -> Service:
        service = started(tmp_path, dnsmasq, sink, allowed)
        services.append(service)
        return service

    yield make
    for service in services:
        service.kill()


def token(service: Service) -> str:
    return service.run("token", "create", "--name", "networks").strip().splitlines()[-1]


def send(service: Service) -> None:
    with smtplib.SMTP("127.0.0.1", service.smtp_port, local_hostname=CLIENT_NAME) as client:
        client.sendmail(SENDER, [ALIAS], message(SENDER, ALIAS, "Inward"))


def test_serve_mail_to_an_mx_on_loopback_fails_5_4_4_and_reaches_nobody(
    make_service: Callable[..., Service], sink: Sink
) -> None:
    service = make_service()

    # In session (the default), the destination's refusal is the DATA reply.
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(service)

    assert refused.value.smtp_code == 554
    text = refused.value.smtp_error.decode()
    assert text.startswith(f"5.4.4 <{ALIAS}>: forwarding refused: "), text
    assert "internal or own addresses" in text
    assert sink.received == []
    assert "not connecting to localhost.loops.example[127.0.0.1]" in service.log.read_text()
    assert service.stop() == 0


def test_serve_destination_on_loopback_refused_422(
    make_service: Callable[..., Service], sink: Sink
) -> None:
    service = make_service()
    headers = {"Authorization": f"Bearer {token(service)}"}

    for email in (MX_ON_LOOPBACK.replace("me@", "other@"), ADDRESS_ON_LOOPBACK):
        response = httpx.post(
            f"{service.api_url}/v1/destinations", json={"email": email}, headers=headers
        )
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "undeliverable_domain"
        assert "resolve only to internal addresses" in error["message"]
    assert sink.received == []  # no verification mail either


def test_serve_allowed_network_delivers_there(
    make_service: Callable[..., Service], sink: Sink
) -> None:
    service = make_service("127.0.0.0/8")
    headers = {"Authorization": f"Bearer {token(service)}"}

    send(service)
    response = httpx.post(
        f"{service.api_url}/v1/destinations", json={"email": ADDRESS_ON_LOOPBACK}, headers=headers
    )

    assert response.status_code == 201, response.text
    received = sink.wait_for(2, timeout=30)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted([MX_ON_LOOPBACK, ADDRESS_ON_LOOPBACK])
    assert service.stop() == 0
