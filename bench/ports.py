"""Loopback ports: picking a free one, and knowing when an SMTP server answers on one."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def smtp_greets(port: int, host: str = HOST) -> bool:
    """Whether an SMTP server on ``host:port`` answers with a 220 banner (then QUIT)."""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            with sock.makefile("rb") as reader:
                line = reader.readline()
                sock.sendall(b"QUIT\r\n")
                reader.readline()
    except OSError:
        return False
    return line.startswith(b"220")
