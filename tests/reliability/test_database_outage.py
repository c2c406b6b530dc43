"""PostgreSQL goes away under a running `mailroute serve` and comes back: meanwhile SMTP
defers recipients (451 4.3.0, never a 5xx, never an accept) and the API answers 503 with
its JSON error body; afterwards both work again by themselves, without a restart."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.smtp import replies
from tests.delivery.sink import Sink
from tests.reliability.conftest import InstallationFactory
from tests.reliability.load import CLIENT_NAME, SENDER, load_ids, load_message
from tests.reliability.proxy import TcpProxy
from tests.reliability.service import ALIAS, Installation, prepare_database

pytestmark = pytest.mark.postgres

RECOVERY_SECONDS = 15.0


@pytest.fixture
def database_proxy(postgres_url: str) -> Iterator[TcpProxy]:
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    yield proxy
    proxy.stop()


def proxied(postgres_url: str, proxy: TcpProxy) -> str:
    url = make_url(postgres_url).set(host=proxy.host, port=proxy.port)
    return url.render_as_string(hide_password=False)


def rcpt(service: Installation) -> str:
    """The reply to RCPT TO the alias, in a new session."""
    with smtplib.SMTP("127.0.0.1", service.smtp_port, CLIENT_NAME, timeout=15) as client:
        client.ehlo()
        client.mail(SENDER)
        code, text = client.rcpt(ALIAS)
        return f"{code} {text.decode()}"


def send(service: Installation, number: int) -> str:
    with smtplib.SMTP("127.0.0.1", service.smtp_port, CLIENT_NAME, timeout=15) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(ALIAS)
        code, text = client.data(load_message(number, ALIAS))
        return f"{code} {text.decode()}"


def domains(service: Installation, token: str) -> httpx.Response:
    return httpx.get(
        f"{service.api_url}/v1/domains", headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


@pytest.fixture
def proxied_service(
    postgres_url: str, database_proxy: TcpProxy, installation: InstallationFactory
) -> tuple[Installation, str]:
    """`mailroute serve` reaching PostgreSQL through the proxy, warmed up (connections
    pooled); its API token."""
    token = prepare_database(postgres_url)
    service = installation(proxied(postgres_url, database_proxy), inline_delivery_timeout="0")
    service.serve()
    assert rcpt(service) == replies.S250_RECIPIENT_OK
    assert domains(service, token).status_code == 200
    return service, token


def test_database_blip_first_request_after_works(
    proxied_service: tuple[Installation, str], database_proxy: TcpProxy
) -> None:
    service, token = proxied_service
    # PostgreSQL restarted while nobody asked: every pooled connection is dead, unnoticed.
    database_proxy.cut()
    database_proxy.restore()

    assert rcpt(service) == replies.S250_RECIPIENT_OK
    assert domains(service, token).status_code == 200


def test_database_outage_defers_then_recovers_without_restart(
    proxied_service: tuple[Installation, str],
    database_proxy: TcpProxy,
    sink: Sink,
    report: Callable[[str], None],
) -> None:
    service, token = proxied_service
    database_proxy.cut()
    during = [rcpt(service) for _ in range(3)]
    # /v1 is answered by the token check, which needs the database; /healthz by a route.
    api = [domains(service, token), httpx.get(f"{service.api_url}/healthz", timeout=15)]

    assert during == [replies.S451_TEMPORARY_FAILURE] * 3
    for response in api:
        assert response.status_code == 503
        assert response.json() == {
            "error": {
                "code": "database_unavailable",
                "message": "the database cannot be reached; try again shortly",
            }
        }

    database_proxy.restore()
    restored = time.monotonic()
    assert rcpt(service) == replies.S250_RECIPIENT_OK
    assert domains(service, token).status_code == 200
    assert httpx.get(f"{service.api_url}/healthz", timeout=15).json() == {"status": "ok"}
    assert send(service, 1).startswith("250 ")
    [delivered] = sink.wait_for(1, timeout=RECOVERY_SECONDS)
    assert load_ids([delivered]) == {1: 1}
    [server] = service.processes
    server.check_alive()
    report(
        f"recovered at the first request after the restore; the worker delivered "
        f"{time.monotonic() - restored:.1f} s after it"
    )
