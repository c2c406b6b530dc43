"""Verification tokens never reach a log line: uvicorn's access log of a real server, and
our own lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api import redaction
from tests.api.live import live_api
from tests.api.verification import latest_link
from tests.conftest import PUBLIC_URL
from tests.fakes import FakeResolver

TOKEN = "Xq3vZ9kP2mW8rT1yU4sN7bC6dF0gH5jL_-aEiOoQtRw"


async def verify_through_a_live_api(
    sessionmaker: async_sessionmaker[AsyncSession],
    resolver: FakeResolver,
    api_token: str,
    *,
    spell: str = "/v1/verify/",
) -> tuple[str, list[int]]:
    """Add a destination and open and confirm its link (its path spelt with ``spell``),
    through a real uvicorn; the token and the statuses of the two link requests."""
    async with (
        live_api(sessionmaker, resolver) as base_url,
        httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_token}"}
        ) as client,
    ):
        created = await client.post("/v1/destinations", json={"email": "me@inbox.example"})
        assert created.status_code == 201
        token = (await latest_link(sessionmaker)).rpartition("/")[2]
        path = f"{spell}{token}"
        statuses = [(await client.get(path)).status_code, (await client.post(path)).status_code]
    return token, statuses


async def test_redaction_access_log_line_hides_the_token(
    sessionmaker: async_sessionmaker[AsyncSession],
    resolver: FakeResolver,
    api_token: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    token, statuses = await verify_through_a_live_api(sessionmaker, resolver, api_token)

    out, err = capfd.readouterr()
    assert statuses == [200, 200]
    assert token not in out + err
    lines = [line for line in out.splitlines() if "/v1/verify/" in line]
    assert len(lines) == 2
    assert '"GET /v1/verify/[redacted] HTTP/1.1" 200' in lines[0]
    assert '"POST /v1/verify/[redacted] HTTP/1.1" 200' in lines[1]


async def test_redaction_access_log_hides_a_percent_encoded_path(
    sessionmaker: async_sessionmaker[AsyncSession],
    resolver: FakeResolver,
    api_token: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # uvicorn logs the path as sent; %76 is "v", and the request reaches the same page.
    token, statuses = await verify_through_a_live_api(
        sessionmaker, resolver, api_token, spell="/v1/%76erify/"
    )

    out, err = capfd.readouterr()
    assert statuses == [200, 200]
    assert token not in out + err
    assert out.count('"POST /v1/verify/[redacted] HTTP/1.1" 200') == 1


@pytest.fixture
def redacting() -> Iterator[None]:
    before = logging.getLogRecordFactory()
    redaction.install()
    yield
    logging.setLogRecordFactory(before)


@pytest.mark.usefixtures("redacting")
def test_redaction_applies_to_our_own_lines(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("app.api.routes.verify")
    with caplog.at_level(logging.INFO):
        log.info("link %s sent", f"{PUBLIC_URL}/v1/verify/{TOKEN}")
        log.info(f"opened /v1/verify/{TOKEN}?from=mail")
        log.info("%(path)s", {"path": f"/v1/verify/{TOKEN}"})

    assert TOKEN not in caplog.text
    assert [r.getMessage() for r in caplog.records] == [
        f"link {PUBLIC_URL}/v1/verify/[redacted] sent",
        "opened /v1/verify/[redacted]",
        "/v1/verify/[redacted]",
    ]


@pytest.mark.usefixtures("redacting")
def test_redaction_install_twice_redacts_once() -> None:
    redaction.install()

    factory = logging.getLogRecordFactory()
    assert isinstance(factory, redaction.RedactingFactory)
    assert not isinstance(factory.make, redaction.RedactingFactory)


def test_redaction_leaves_other_paths_alone() -> None:
    line = '127.0.0.1:5000 - "GET /v1/destinations/3?verify=1 HTTP/1.1" 200'

    assert redaction.redact(line) == line
