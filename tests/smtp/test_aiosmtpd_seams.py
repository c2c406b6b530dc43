"""The aiosmtpd members app.smtp.aiosmtpd_seams relies on are still there, as we use them.

After an aiosmtpd upgrade a failure here names the private member that moved, before a
session limit quietly stops working. Methods are checked on the class (kind, parameters,
and for those we override, that aiosmtpd still calls them where we expect); attributes
on a live session of aiosmtpd's own SMTP, on both loops (tests/smtp/conftest.py).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest
from aiosmtpd.smtp import SMTP

from app.smtp.aiosmtpd_seams import PRIVATE, SeamedSMTP

# name: (a coroutine function?, parameters after self, methods of SMTP that call it)
METHODS = {
    "_handle_client": (True, (), ("connection_made",)),
    "_call_handler_hook": (True, ("command", "args"), ("smtp_HELO", "smtp_MAIL", "smtp_RCPT")),
    "_getaddr": (False, ("arg",), ("smtp_MAIL", "smtp_RCPT")),
    "_timeout_cb": (False, (), ("_reset_timeout",)),
    "_reset_timeout": (False, ("duration",), ()),
    "_strip_command_keyword": (False, ("keyword", "arg"), ()),
    "_set_post_data_state": (False, (), ()),
}
# name: (may be None, the methods we call on it)
ATTRIBUTES = {
    "_timeout_handle": (False, ("cancel",)),
    "_handler_coroutine": (False, ("cancel", "done")),
    "_original_transport": (True, ("abort", "close")),  # None until STARTTLS
    "_reader": (False, ("readuntil", "readexactly")),
    "_writer": (False, ("write", "close")),
}


def test_aiosmtpd_seams_every_member_is_checked() -> None:
    assert set(PRIVATE) == set(METHODS) | set(ATTRIBUTES)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_aiosmtpd_seams_method_unchanged(name: str) -> None:
    is_coroutine, parameters, callers = METHODS[name]
    member = inspect.getattr_static(SMTP, name, None)
    assert inspect.isfunction(member), f"aiosmtpd.smtp.SMTP.{name} is gone or not a method"
    assert inspect.iscoroutinefunction(member) == is_coroutine, (
        f"aiosmtpd.smtp.SMTP.{name}: {'no longer' if is_coroutine else 'now'} a coroutine"
    )
    found = tuple(inspect.signature(member).parameters)[1:]
    assert found == parameters, f"aiosmtpd.smtp.SMTP.{name}{found}: expected {parameters}"
    for caller in callers:
        source = inspect.getsource(getattr(SMTP, caller))
        assert f"self.{name}" in source, f"aiosmtpd.smtp.SMTP.{caller} no longer uses {name}"


def test_aiosmtpd_seams_names_are_ours() -> None:
    """The names SeamedSMTP adds must not shadow one aiosmtpd (or asyncio) defines."""
    ours = [name for name in vars(SeamedSMTP) if not name.startswith("_")]
    assert ours
    taken = [name for name in ours if hasattr(SMTP, name)]
    assert not taken, f"aiosmtpd.smtp.SMTP now defines {taken}"


@pytest.fixture
async def live_session() -> AsyncIterator[SMTP]:
    """aiosmtpd's own SMTP, after the greeting of a real connection."""
    sessions: list[SMTP] = []

    def factory() -> SMTP:
        sessions.append(SMTP(None, hostname="seams.example", loop=asyncio.get_running_loop()))
        return sessions[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert (await reader.readline()).startswith(b"220 seams.example")
        yield sessions[0]
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
async def test_aiosmtpd_seams_attribute_unchanged(live_session: SMTP, name: str) -> None:
    may_be_none, methods = ATTRIBUTES[name]
    assert hasattr(live_session, name), f"an aiosmtpd session has no {name} any more"
    value = getattr(live_session, name)
    if value is None:
        assert may_be_none, f"aiosmtpd's {name} is None in a running session"
        return
    missing = [method for method in methods if not callable(getattr(value, method, None))]
    assert not missing, f"aiosmtpd's {name} ({type(value).__name__}) has no {missing}"
