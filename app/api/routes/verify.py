"""The verification link: GET shows a page with a Confirm button, only POST verifies.

Mail scanners and link previewers follow links with GET; they must never verify anything.
These pages need no API token: the single-use secret in the URL is the credential.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse

from app.api.deps import SessionDep
from app.errors import VerificationFailed
from app.services import destinations

router = APIRouter(prefix="/verify", tags=["verification"])

# Any text: a mangled or overlong link is just an unknown one, answered with the 404 page.
TokenPath = Annotated[str, Path()]
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
# Documented, so that the published schema names every status these pages answer with.
NOT_USABLE: dict[int | str, dict[str, object]] = {
    404: {
        "description": "The link is unknown, already used or expired (one page for all three)",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - mailroute</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.5rem 1.5rem;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=escape(title), body=body), status, headers=HEADERS)


def failure_page(exc: VerificationFailed) -> HTMLResponse:
    return page("Link not usable", f"<p>{escape(exc.message)}.</p>", 404)


@router.get(
    "/{token}", response_class=HTMLResponse, summary="Verification page", responses=NOT_USABLE
)
async def show_verification(token: TokenPath, session: SessionDep) -> HTMLResponse:
    """A page asking the inbox's owner to confirm; it changes nothing."""
    try:
        destination = await destinations.pending_verification(session, token)
    except VerificationFailed as exc:
        return failure_page(exc)
    body = (
        f"<p>Confirm that mail may be forwarded to <strong>{escape(destination.email)}</strong>."
        '</p><form method="post"><button type="submit">Confirm</button></form>'
    )
    return page("Confirm forwarding", body)


@router.post(
    "/{token}", response_class=HTMLResponse, summary="Confirm a destination", responses=NOT_USABLE
)
async def confirm_verification(token: TokenPath, session: SessionDep) -> HTMLResponse:
    """Mark the destination verified; the link cannot be used again."""
    try:
        destination = await destinations.verify(session, token)
    except VerificationFailed as exc:
        return failure_page(exc)
    body = f"<p>Mail may now be forwarded to <strong>{escape(destination.email)}</strong>.</p>"
    return page("Address verified", body)
