"""DATA's text on the way out (RFC 5321 4.5.2): line ends made CRLF, dots stuffed, the end
of data added, written a block at a time as the destination takes it.

aiosmtplib's data() makes three whole copies of the message before writing it all at
once (the worker's memory per message, which bench/large.py measures); this keeps one
block. It leans on aiosmtplib's internals, fenced in app.delivery.aiosmtplib_seams: the
reply's future and the flow control's wait for the transport.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from app.delivery import aiosmtplib_seams as seams
from app.message import has_bare_newline

BLOCK_OCTETS = 256 * 1024  # what DATA writes at a time
END_OF_DATA = b".\r\n"
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")


def data_blocks(content: bytes, size: int = BLOCK_OCTETS, prefix: bytes = b"") -> Iterator[bytes]:
    """What DATA sends after the 354 (RFC 5321 4.5.2), end of data included: ``prefix``
    (header fields we add, CRLF-ended) and ``content`` with every line ended by CRLF (bare
    CR and LF made CRLF, as aiosmtplib does), a line starting with "." given another, the
    last line ended, then ".<CRLF>". Blocks of about ``size`` octets, each ending a line
    (so that a line start is a block start or follows an LF inside one); the prefix rides
    with the first and the end of data with the last: one write for a small message."""
    view = memoryview(content)
    start = 0
    block = prefix
    while start < len(content):
        newline = content.find(b"\n", start + size)
        stop = len(content) if newline == -1 else newline + 1
        if block and start:
            yield block
        piece = bytes(view[start:stop])
        block = prefix + piece if not start else piece
        if has_bare_newline(block):
            block = _LINE_END.sub(b"\r\n", block)
        if block.startswith(b"."):
            block = b"." + block
        if b"\n." in block:
            block = block.replace(b"\n.", b"\n..")
        start = stop
    ended = block.endswith(b"\r\n")
    yield block + (END_OF_DATA if ended else b"\r\n" + END_OF_DATA)


async def write_text(protocol: SMTPProtocol, content: bytes, prefix: bytes = b"") -> bool:
    """Write the text and the end of data as the destination takes them (a block, then
    a wait while the transport is over its high-water mark). True when the destination
    answered before the end (refusing the message early, perhaps hanging up after): that
    answer ends the writing, and is what read_response() gives."""
    answer = seams.next_reply(protocol)
    for block in data_blocks(content, prefix=prefix):
        if answer.done():
            return True
        try:
            protocol.write(block)
        except aiosmtplib.SMTPServerDisconnected:
            if answer.done():
                return True
            raise
        if seams.writing_paused(protocol):
            drained = asyncio.ensure_future(seams.writable(protocol))
            await asyncio.wait((drained, answer), return_when=asyncio.FIRST_COMPLETED)
            if answer.done():
                drained.cancel()
                if drained.done() and not drained.cancelled():
                    drained.exception()  # retrieved: the answer is what counts
                return True
            drained.result()  # ConnectionResetError when the connection was lost
    return False
