"""Request bodies must be JSON: a form-encoded body (curl -d without a header) gets a 415
that says what to send, rather than a confusing validation error."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response

METHODS_WITH_BODY = {"POST", "PUT", "PATCH"}
EXEMPT_PREFIXES = ("/v1/verify/",)  # an HTML form posts there


class RequireJsonBody:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._refused(scope):
            response = error_response(
                415,
                "unsupported_media_type",
                "send the request body as JSON, with Content-Type: application/json",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _refused(scope: Scope) -> bool:
        if scope["method"] not in METHODS_WITH_BODY or scope["path"].startswith(EXEMPT_PREFIXES):
            return False
        headers = Headers(scope=scope)
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        is_json = media_type == "application/json" or media_type.endswith("+json")
        return has_body and not is_json
