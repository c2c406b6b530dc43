"""The worker child's wake-up pipe (app.supervisor.watch_pipe): a byte wakes the worker;
the end of the pipe (every writer gone: serve and its SMTP children) stops it, once, and
is no longer watched (watched on, an end of file is readable for ever: a spinning loop)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from app.supervisor import watch_pipe


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        try:
            os.close(fd)
        except OSError:
            pass


async def test_watch_pipe_wakes_on_a_byte(pipe: tuple[int, int]) -> None:
    read, write = pipe
    woken = asyncio.Event()
    closed: list[bool] = []
    watch_pipe(read, woken.set, lambda: closed.append(True))
    try:
        os.write(write, b"x")
        await asyncio.wait_for(woken.wait(), 5)
        assert closed == []
    finally:
        asyncio.get_running_loop().remove_reader(read)


async def test_watch_pipe_stops_once_when_every_writer_is_gone(pipe: tuple[int, int]) -> None:
    read, write = pipe
    wakes: list[bool] = []
    closed = asyncio.Event()
    calls: list[bool] = []

    def on_closed() -> None:
        calls.append(True)
        closed.set()

    watch_pipe(read, lambda: wakes.append(True), on_closed)
    os.write(write, b"xyz")
    os.close(write)
    await asyncio.wait_for(closed.wait(), 5)
    for _ in range(50):  # a loop still watching the end would call back again and again
        await asyncio.sleep(0)
    assert calls == [True]
    assert len(wakes) <= 1
    assert asyncio.get_running_loop().remove_reader(read) is False  # no longer watched
