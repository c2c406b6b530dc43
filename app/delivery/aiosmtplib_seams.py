"""aiosmtplib's private members that our DATA relies on, touched here and nowhere else.

Our DATA (app.delivery.relay, app.delivery.data) writes the text a block at a time as
the destination takes it, where aiosmtplib's data() copies the whole message three times
and writes it at once (the memory that bench/large.py measures). aiosmtplib 5 has no
public way to do that: these functions reach into its SMTPProtocol.
tests/delivery/test_aiosmtplib_seams.py checks every member in PRIVATE against the
installed aiosmtplib and names the one an upgrade removed or changed; the pin in
pyproject.toml (>=5.1,<6) is the other half of the fence.
"""

from __future__ import annotations

import asyncio

from aiosmtplib import SMTPResponse
from aiosmtplib.protocol import SMTPProtocol

# What we rely on, and why: one line each.
PRIVATE = {
    "_response_waiter": "the future of the next reply: one before the end of DATA stops writing",
    "_response_pending": "set, data_received keeps a reply that comes before we ask for it",
    "_paused": "the transport is over its high-water mark: wait before the next block",
    "_drain_helper": "waits until the transport takes more (ConnectionResetError when lost)",
}


def next_reply(protocol: SMTPProtocol) -> asyncio.Future[SMTPResponse]:
    """The future that read_response() will give; done once the server has answered."""
    waiter = protocol._response_waiter
    assert waiter is not None  # set from connection_made on
    return waiter


def keep_early_reply(protocol: SMTPProtocol) -> None:
    """Keep a reply that comes while we write (an early refusal), for read_response()."""
    protocol._response_pending = True


def writing_paused(protocol: SMTPProtocol) -> bool:
    return protocol._paused


async def writable(protocol: SMTPProtocol) -> None:
    """Return once the transport takes more; ConnectionResetError if the connection went."""
    await protocol._drain_helper()
