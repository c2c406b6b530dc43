"""/v1/verify/{token}: the link mailed to a new destination. GET only shows a page, POST
verifies; the link is single use, expires, and needs no API token."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.app import create_app
from app.api.context import ApiContext
from app.db.models import VerificationToken
from tests.api.verification import add_destination, latest_link, time_passes
from tests.matchers import Recent

CONFIRM_FORM = '<form method="post"><button type="submit">Confirm</button></form>'
UNKNOWN_TEXT = "this verification link is unknown, already used or expired; ask for a new one"


async def status_of(client: httpx.AsyncClient, destination: dict) -> str:
    response = await client.get(f"/v1/destinations/{destination['id']}")
    status: str = response.json()["status"]
    return status


@pytest.fixture
async def browser(api_context: ApiContext) -> AsyncIterator[httpx.AsyncClient]:
    """A client without any token: the ``anonymous`` fixture is the same object as ``client``
    and gains its token when a test uses both."""
    transport = httpx.ASGITransport(app=create_app(api_context))
    async with httpx.AsyncClient(transport=transport, base_url="http://mailroute.test") as browser:
        yield browser


@pytest.fixture
async def destination(client: httpx.AsyncClient) -> dict:
    return await add_destination(client, "me@inbox.example")


@pytest.fixture
async def link(destination: dict, sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    return await latest_link(sessionmaker)


async def expire_links(session: AsyncSession) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    await session.execute(update(VerificationToken).values(expires_at=past))
    await session.commit()


# --- GET: the page ------------------------------------------------------------------------


async def test_verify_browser_has_no_token(browser: httpx.AsyncClient, link: str) -> None:
    response = await browser.get("/v1/destinations")

    assert "authorization" not in browser.headers
    assert response.status_code == 401


async def test_show_verification_page_has_confirm_form(
    browser: httpx.AsyncClient, link: str
) -> None:
    response = await browser.get(link)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Confirm forwarding - mailroute</title>" in response.text
    assert (
        "<p>Confirm that mail may be forwarded to <strong>me@inbox.example</strong>.</p>"
        + CONFIRM_FORM
    ) in response.text


async def test_show_verification_does_not_verify(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, destination: dict, link: str
) -> None:
    await browser.get(link)

    assert await status_of(client, destination) == "pending"


async def test_show_verification_leaves_link_usable(browser: httpx.AsyncClient, link: str) -> None:
    await browser.get(link)
    await browser.get(link)

    response = await browser.post(link)

    assert response.status_code == 200
    assert "<title>Address verified - mailroute</title>" in response.text


async def test_show_verification_page_is_not_cached_or_indexed(
    browser: httpx.AsyncClient, link: str
) -> None:
    response = await browser.get(link)

    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-robots-tag"] == "noindex"
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_show_verification_escapes_the_address(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await add_destination(client, "o'brien&co@inbox.example")
    link = await latest_link(sessionmaker)

    response = await browser.get(link)

    assert "<strong>o&#x27;brien&amp;co@inbox.example</strong>" in response.text
    assert "o'brien&co" not in response.text


async def test_show_verification_names_only_its_destination(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await add_destination(client, "first@inbox.example")
    link = await latest_link(sessionmaker)
    await add_destination(client, "second@inbox.example")

    response = await browser.get(link)

    assert "first@inbox.example" in response.text
    assert "second@inbox.example" not in response.text


async def test_show_verification_unknown_token_is_404(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/v1/verify/not-a-token-we-issued")

    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert f"<h1>Link not usable</h1><p>{UNKNOWN_TEXT}.</p>" in response.text


async def test_show_verification_overlong_token_is_404_page(
    browser: httpx.AsyncClient,
) -> None:
    # A link a mail client mangled is still a person at a browser: the same page, not JSON.
    response = await browser.get("/v1/verify/" + "x" * 200)

    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"


async def test_show_verification_expired_is_404(
    browser: httpx.AsyncClient, link: str, session: AsyncSession
) -> None:
    await expire_links(session)

    response = await browser.get(link)

    assert response.status_code == 404
    assert f"<p>{UNKNOWN_TEXT}.</p>" in response.text


async def test_show_verification_used_link_is_404(browser: httpx.AsyncClient, link: str) -> None:
    await browser.post(link)

    response = await browser.get(link)

    assert response.status_code == 404
    assert f"<p>{UNKNOWN_TEXT}.</p>" in response.text


# --- POST: confirming ---------------------------------------------------------------------


async def test_confirm_verification_shows_success_page(
    browser: httpx.AsyncClient, link: str
) -> None:
    response = await browser.post(link)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert (
        "<h1>Address verified</h1>"
        "<p>Mail may now be forwarded to <strong>me@inbox.example</strong>.</p>"
    ) in response.text


async def test_confirm_verification_marks_destination_verified(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, destination: dict, link: str
) -> None:
    await browser.post(link)

    response = await client.get(f"/v1/destinations/{destination['id']}")

    assert response.json() == {**destination, "status": "verified", "verified_at": Recent()}


async def test_confirm_verification_is_single_use(browser: httpx.AsyncClient, link: str) -> None:
    await browser.post(link)

    response = await browser.post(link)

    assert response.status_code == 404
    assert f"<h1>Link not usable</h1><p>{UNKNOWN_TEXT}.</p>" in response.text


async def test_confirm_verification_second_use_keeps_verified_at(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, destination: dict, link: str
) -> None:
    await browser.post(link)
    first = (await client.get(f"/v1/destinations/{destination['id']}")).json()
    await browser.post(link)

    response = await client.get(f"/v1/destinations/{destination['id']}")

    assert response.json() == first


async def test_confirm_verification_expired_is_404(
    browser: httpx.AsyncClient, link: str, session: AsyncSession
) -> None:
    await expire_links(session)

    response = await browser.post(link)

    assert response.status_code == 404
    assert f"<h1>Link not usable</h1><p>{UNKNOWN_TEXT}.</p>" in response.text


async def test_confirm_verification_expired_leaves_destination_pending(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    destination: dict,
    link: str,
    session: AsyncSession,
) -> None:
    await expire_links(session)
    await browser.post(link)

    assert await status_of(client, destination) == "pending"


async def test_confirm_verification_link_valid_for_24_hours(
    link: str, session: AsyncSession
) -> None:
    row = await session.scalar(select(VerificationToken))
    await session.commit()

    assert row is not None
    assert row.expires_at - row.created_at == timedelta(hours=24)


async def test_confirm_verification_unknown_token_is_404(browser: httpx.AsyncClient) -> None:
    response = await browser.post("/v1/verify/not-a-token-we-issued")

    assert response.status_code == 404
    assert f"<p>{UNKNOWN_TEXT}.</p>" in response.text


async def test_confirm_verification_old_link_fails_after_resend(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    destination: dict,
    link: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await time_passes(sessionmaker)
    await client.post(f"/v1/destinations/{destination['id']}/resend")

    response = await browser.post(link)

    assert response.status_code == 404
    assert await status_of(client, destination) == "pending"


async def test_confirm_verification_new_link_works_after_resend(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    destination: dict,
    link: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await time_passes(sessionmaker)
    await client.post(f"/v1/destinations/{destination['id']}/resend")
    new_link = await latest_link(sessionmaker)

    response = await browser.post(new_link)

    assert new_link != link
    assert response.status_code == 200
    assert await status_of(client, destination) == "verified"


async def test_confirm_verification_verifies_only_its_destination(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    destination: dict,
    link: str,
) -> None:
    other = await add_destination(client, "other@inbox.example")

    await browser.post(link)

    assert await status_of(client, other) == "pending"


async def test_confirm_verification_accepts_html_form_post(
    browser: httpx.AsyncClient, link: str
) -> None:
    # What a browser sends for the Confirm form: form-encoded, not JSON.
    response = await browser.post(
        link,
        content=b"",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 200
    assert "<h1>Address verified</h1>" in response.text


async def test_confirm_verification_accepts_form_post_with_fields(
    browser: httpx.AsyncClient, link: str
) -> None:
    response = await browser.post(link, data={"confirm": "yes"})

    assert response.status_code == 200
    assert "<h1>Address verified</h1>" in response.text


async def test_confirm_verification_after_destination_deleted_is_404(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, destination: dict, link: str
) -> None:
    await client.delete(f"/v1/destinations/{destination['id']}")

    response = await browser.post(link)

    assert response.status_code == 404
    assert f"<p>{UNKNOWN_TEXT}.</p>" in response.text


# --- the link as a secret -----------------------------------------------------------------


def link_secret(link: str) -> str:
    return link.rpartition("/")[2]


def page_seen(response: httpx.Response) -> tuple[int, dict[str, str], str]:
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return response.status_code, headers, response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_verify_unknown_used_and_expired_links_look_alike(
    client: httpx.AsyncClient,
    browser: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    method: str,
) -> None:
    # Whoever tries links learns nothing: not even that one was issued once.
    await add_destination(client, "used@inbox.example")
    used = await latest_link(sessionmaker)
    await browser.post(used)
    await add_destination(client, "expired@inbox.example")
    expired = await latest_link(sessionmaker)
    await expire_links(session)
    unknown = "/v1/verify/" + "A" * len(link_secret(expired))

    seen = [page_seen(await browser.request(method, link)) for link in (unknown, used, expired)]

    assert seen[0][0] == 404
    assert seen[1] == seen[0]
    assert seen[2] == seen[0]


async def test_verify_failure_page_names_no_address(
    browser: httpx.AsyncClient, link: str, session: AsyncSession
) -> None:
    await expire_links(session)

    response = await browser.get(link)

    assert "@" not in response.text


async def test_verify_link_secret_has_at_least_128_random_bits(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    secrets_seen = []
    for n in range(5):
        await add_destination(client, f"inbox{n}@inbox.example")
        secrets_seen.append(link_secret(await latest_link(sessionmaker)))

    # URL-safe base64: 6 bits a character; all distinct, none sharing a long prefix.
    assert all(len(secret) * 6 >= 128 for secret in secrets_seen)
    assert len({secret[:8] for secret in secrets_seen}) == len(secrets_seen)


async def test_verify_link_secret_is_stored_only_as_a_hash(
    link: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    secret = link_secret(link)
    async with sessionmaker() as session:
        rows = (await session.execute(select(VerificationToken))).scalars().all()
        dump = [str(getattr(row, c.key)) for row in rows for c in VerificationToken.__table__.c]

    assert [row.token_hash for row in rows] == [hashlib.sha256(secret.encode()).hexdigest()]
    assert not any(secret in value for value in dump)


async def test_confirm_verification_page_names_only_its_destination(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, link: str
) -> None:
    await add_destination(client, "second@inbox.example")

    response = await browser.post(link)

    assert "me@inbox.example" in response.text
    assert "second@inbox.example" not in response.text


async def test_confirm_verification_just_before_expiry_works(
    browser: httpx.AsyncClient, link: str, session: AsyncSession
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=1)
    await session.execute(update(VerificationToken).values(expires_at=soon))
    await session.commit()

    response = await browser.post(link)

    assert response.status_code == 200
