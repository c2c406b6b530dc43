"""A bare SMTP client on asyncio streams, so a bench times one command's round trip and
nothing else (no library's parsing, retries or pipelining in the measurement)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

CRLF = b"\r\n"
DATA_CHUNK = 1 << 20


class SmtpError(Exception):
    """The server answered with a code the bench did not expect."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def klass(self) -> str:
        return f"{self.code // 100}xx"


class SmtpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, helo: str = "bench.example.com") -> SmtpClient:
        """Connected, greeted and past EHLO."""
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
        client = cls(reader, writer)
        await client.expect(await client.read_reply(), 220)
        await client.expect(await client.command(f"EHLO {helo}"), 250)
        return client

    async def read_reply(self) -> Reply:
        """One reply, all its lines (RFC 5321 4.2.1: "250-" continues, "250 " ends)."""
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise SmtpError("the server closed the connection")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return Reply(int(line[:3]), "\n".join(lines))

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + CRLF)
        await self.writer.drain()
        return await self.read_reply()

    @staticmethod
    async def expect(reply: Reply, code: int) -> Reply:
        if reply.code != code:
            raise SmtpError(f"expected {code}, got {reply.text!r}")
        return reply

    async def send_data(self, lines: Iterable[bytes]) -> Reply:
        """DATA with ``lines`` (each ending in CRLF, none needing dot-stuffing), written in
        large chunks, then the final dot; the reply to the message."""
        await self.expect(await self.command("DATA"), 354)
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= DATA_CHUNK:
                self.writer.write(b"".join(chunk))
                await self.writer.drain()
                chunk, size = [], 0
        self.writer.write(b"".join(chunk) + b"." + CRLF)
        await self.writer.drain()
        return await self.read_reply()

    async def close(self) -> None:
        try:
            await self.command("QUIT")
        except (OSError, SmtpError):
            pass
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass
