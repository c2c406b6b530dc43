"""Starting the SMTP server on the running event loop, beside the API and the worker."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from app.smtp.handler import InboundHandler
from app.smtp.limits import DEFAULT_LIMITS, Gate, MemoryBudget, SessionLimits
from app.smtp.protocol import MailrouteSMTP

IDENT = "mailroute ESMTP"


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """For STARTTLS: any client may encrypt; none has to present a certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def start_server(
    handler: InboundHandler,
    *,
    host: str,
    port: int,
    max_message_size: int,
    tls: ssl.SSLContext | None = None,
    gate: Gate | None = None,
    limits: SessionLimits = DEFAULT_LIMITS,
    budget: MemoryBudget | None = None,
    reuse_port: bool = False,
) -> asyncio.Server:
    """``budget``: shared by this server's sessions; a default one when not given."""
    loop = asyncio.get_running_loop()
    shared = budget if budget is not None else MemoryBudget()

    def protocol() -> MailrouteSMTP:
        return MailrouteSMTP(
            handler,
            gate,
            limits,
            shared,
            data_size_limit=max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=handler.config.hostname,
            ident=IDENT,
            tls_context=tls,
            loop=loop,
        )

    return await loop.create_server(
        protocol, host=host, port=port, reuse_address=True, reuse_port=reuse_port or None
    )
