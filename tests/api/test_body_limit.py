"""Request bodies over API_MAX_BODY_SIZE: 413 before they are read, under a real uvicorn.

Each big body comes from a generator that counts what the client managed to send: had
the server read the body whole, the generator would have been exhausted. The big bodies
go through a raw socket that reads while it sends, as curl does: the server closes the
connection after its 413 without reading on, and a client that only reads once it has
sent everything (httpx) finds the connection reset instead of the answer."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.api.live import live_api
from tests.fakes import FakeResolver

LIMIT = 1024 * 1024
BIG = 60 * 1024 * 1024
CHUNK = 64 * 1024
QUICKLY = 5.0  # seconds; sending 60 MB over loopback and parsing it takes longer
TOO_LARGE = {
    "error": {
        "code": "payload_too_large",
        "message": f"the request body is larger than {LIMIT} bytes",
    }
}


class Body:
    """``size`` bytes of a valid request, ``{"name": "example.org"`` and spaces, in chunks;
    ``sent`` counts what the client took from it."""

    OPEN = b'{"name": "example.org"'

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.OPEN
        self.sent += len(self.OPEN)
        while self.sent < self.size - 1:
            chunk = b" " * min(CHUNK, self.size - 1 - self.sent)
            self.sent += len(chunk)
            yield chunk
        self.sent += 1
        yield b"}"

    @property
    def exhausted(self) -> bool:
        return self.sent >= self.size


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    took: float


async def raw_post(base_url: str, token: str, body: Body, *, chunked: bool) -> Answer:
    """POST /v1/domains, reading the answer while the body is still being sent."""
    url = urlsplit(base_url)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {body.size}"
    head = (
        f"POST /v1/domains HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.setblocking(False)
        reading = asyncio.create_task(_read_response(loop, sock))
        try:
            await loop.sock_sendall(sock, head)
            async for chunk in body:
                if reading.done():
                    break
                framed = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                await loop.sock_sendall(sock, framed)
            else:
                if chunked:
                    await loop.sock_sendall(sock, b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection: its answer says why
        status, headers, content = await asyncio.wait_for(reading, 60)
    return Answer(status, headers, content, time.monotonic() - started)


async def _read_response(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:])
            }
            if len(rest) >= int(headers.get("content-length", "0")):
                return int(lines[0].split()[1]), headers, rest
        try:
            received = await loop.sock_recv(sock, 65536)
        except ConnectionResetError:
            received = b""
        if not received:
            raise AssertionError(f"connection closed before a whole response: {data!r}")
        data += received


@pytest.fixture
async def base_url(
    sessionmaker: async_sessionmaker[AsyncSession], resolver: FakeResolver
) -> AsyncIterator[str]:
    async with live_api(sessionmaker, resolver) as url:
        yield url


@pytest.fixture
async def api(base_url: str, api_token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        yield client


def assert_refused_unread(answer: Answer, body: Body) -> None:
    assert answer.status == 413
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == TOO_LARGE
    assert answer.took < QUICKLY
    assert not body.exhausted
    assert body.sent < BIG // 4


async def test_body_limit_declared_length_over_limit_is_413_unread(
    base_url: str, api_token: str
) -> None:
    body = Body(BIG)

    answer = await raw_post(base_url, api_token, body, chunked=False)

    assert_refused_unread(answer, body)


async def test_body_limit_chunked_body_over_limit_is_413_unread(
    base_url: str, api_token: str
) -> None:
    body = Body(BIG)

    answer = await raw_post(base_url, api_token, body, chunked=True)

    assert_refused_unread(answer, body)


async def test_body_limit_refused_body_changes_nothing(
    base_url: str, api_token: str, api: httpx.AsyncClient
) -> None:
    # A valid request but for its size: served, it would have added the domain.
    answers = [
        await raw_post(base_url, api_token, Body(LIMIT + 1), chunked=chunked)
        for chunked in (False, True)
    ]

    assert [a.status for a in answers] == [413, 413]
    assert (await api.get("/v1/domains")).json() == []


async def test_body_limit_chunked_body_under_limit_is_served(api: httpx.AsyncClient) -> None:
    # Padded with spaces to the limit: counted, and let through whole.
    text = json.dumps({"name": "example.org"}).encode()
    padded = text + b" " * (LIMIT - len(text))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(padded), CHUNK):
            yield padded[start : start + CHUNK]

    response = await api.post("/v1/domains", content=chunks())

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "example.org"


async def test_body_limit_is_the_setting(
    sessionmaker: async_sessionmaker[AsyncSession], resolver: FakeResolver, api_token: str
) -> None:
    headers = {"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"}
    async with (
        live_api(sessionmaker, resolver, api_max_body_size=2048) as base_url,
        httpx.AsyncClient(base_url=base_url, headers=headers) as client,
    ):
        small = await client.post("/v1/domains", content=json.dumps({"name": "a.example"}))
        large = await client.post("/v1/domains", content=b" " * 2049)

    assert small.status_code == 201
    assert large.status_code == 413
    assert large.json()["error"]["message"] == "the request body is larger than 2048 bytes"
