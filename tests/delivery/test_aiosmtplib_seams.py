"""The aiosmtplib members app.delivery.aiosmtplib_seams relies on are still there, as we use them.

After an aiosmtplib upgrade a failure here names the private member that moved, before
the relay's block-by-block DATA quietly drops an early reply or stops waiting for the
transport. The method is checked on the class; the attributes on the protocol of a
client connected to a real sink.
"""

from __future__ import annotations

import asyncio
import inspect

import aiosmtplib
import pytest
from aiosmtplib.protocol import SMTPProtocol

from app.delivery import aiosmtplib_seams as seams
from tests.delivery.sink import Sink

# name: (a coroutine function?, parameters after self)
METHODS = {"_drain_helper": (True, ())}
# name: the type its value has on a connected, idle client
ATTRIBUTES = {"_response_waiter": asyncio.Future, "_response_pending": bool, "_paused": bool}


def test_aiosmtplib_seams_every_member_is_checked() -> None:
    assert set(seams.PRIVATE) == set(METHODS) | set(ATTRIBUTES)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_aiosmtplib_seams_method_unchanged(name: str) -> None:
    is_coroutine, parameters = METHODS[name]
    member = inspect.getattr_static(SMTPProtocol, name, None)
    where = f"aiosmtplib.protocol.SMTPProtocol.{name}"
    assert inspect.isfunction(member), f"{where} is gone or not a method"
    assert inspect.iscoroutinefunction(member) == is_coroutine, f"{where}: kind changed"
    found = tuple(inspect.signature(member).parameters)[1:]
    assert found == parameters, f"{where}{found}: expected {parameters}"


@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
async def test_aiosmtplib_seams_attribute_unchanged(sink: Sink, name: str) -> None:
    client = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False, timeout=10)
    await client.connect()
    try:
        protocol = client.protocol
        assert protocol is not None
        assert hasattr(protocol, name), f"aiosmtplib's SMTPProtocol has no {name} any more"
        value = getattr(protocol, name)
        expected = ATTRIBUTES[name]
        assert isinstance(value, expected), (
            f"aiosmtplib's SMTPProtocol.{name} is a {type(value).__name__}, not {expected}"
        )
    finally:
        await client.quit()
