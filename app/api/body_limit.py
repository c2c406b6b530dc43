"""Request bodies past a size are refused with 413 before they are read whole.

A pure ASGI middleware, outermost among ours: a declared ``Content-Length`` over the limit
is answered at once, unread; a body without one (``Transfer-Encoding: chunked``) is
counted as it streams in, and the first chunk past the limit ends it. Either way the 413
says ``Connection: close`` (RFC 9110 15.5.14 lets the server close the connection), so
uvicorn does not drain the rest to reuse the connection.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response

TOO_LARGE = "the request body is larger than {limit} bytes"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self.max_body_size:
            await too_large(self.max_body_size)(scope, receive, send)
            return
        await _CountedRequest(self, scope, receive, send).run()


def too_large(limit: int) -> Response:
    return error_response(
        413, "payload_too_large", TOO_LARGE.format(limit=limit), headers={"Connection": "close"}
    )


class _CountedRequest:
    """One request whose body is counted; past the limit the app hears a disconnect,
    and whatever it then answers is dropped in favour of our 413."""

    def __init__(self, limit: BodyLimit, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self.receive = receive
        self.send = send
        self.received = 0
        self.response_started = False
        self.refused = False

    async def run(self) -> None:
        await self.limit.app(self.scope, self._receive, self._send)

    async def _receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit.max_body_size:
                self.refused = True
                if not self.response_started:
                    self.response_started = True
                    await too_large(self.limit.max_body_size)(self.scope, self.receive, self.send)
                return {"type": "http.disconnect"}
        return message

    async def _send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.send(message)
