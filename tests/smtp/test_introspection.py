"""What aiosmtpd finds by introspecting each new session (MailrouteSMTP.__dir__,
InboundHandler.__dir__): the hooks and commands of the object's own class, subclasses
included, and nothing else."""

from __future__ import annotations

from typing import Any

from app.smtp.handler import InboundHandler
from app.smtp.protocol import MailrouteSMTP


class WithNoopHook(InboundHandler):
    async def handle_NOOP(self, *args: Any) -> None: ...


class WithCommand(MailrouteSMTP):
    async def smtp_XTEST(self, arg: str) -> None: ...


def names(cls: type) -> list[str]:
    return dir(cls.__new__(cls))


def test_handler_dir_names_its_hooks_only() -> None:
    assert names(InboundHandler) == sorted(
        n for n in vars(InboundHandler) if n.startswith("handle_")
    )


def test_handler_subclass_hooks_are_seen_after_the_base_class() -> None:
    base = names(InboundHandler)
    assert names(WithNoopHook) == sorted([*base, "handle_NOOP"])
    assert names(InboundHandler) == base


def test_protocol_subclass_commands_are_seen_after_the_base_class() -> None:
    base = names(MailrouteSMTP)
    assert "smtp_RCPT" in base and "smtp_XTEST" not in base
    assert "smtp_XTEST" in names(WithCommand)
    assert all(n.startswith(("smtp_", "auth_")) for n in names(WithCommand))
