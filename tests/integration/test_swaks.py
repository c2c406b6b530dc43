"""swaks as the sending client: what a mail server on the internet would do to mailroute."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.smtp import replies
from tests.integration.conftest import CLIENT_NAME, Mailroute, message, stored, swaks, wait_for
from tests.peers.postfix import UNKNOWN_MAILBOX, Postfix

pytestmark = [pytest.mark.postfix, pytest.mark.dnsmasq]

SENDER = "alice@sender.example"
# man swaks, EXIT CODES
NO_RCPT_ACCEPTED = 24
DATA_NOT_ACCEPTED = 26


def swaks_args(mailroute: Mailroute, to: str, data: Path) -> list[str]:
    return [
        *("--server", mailroute.host, "--port", str(mailroute.port)),
        *("--helo", CLIENT_NAME, "--from", SENDER, "--to", to),
        *("--data", f"@{data}", "--timeout", "30"),
    ]


async def test_swaks_forward_reaches_destination_maildir(
    mailroute: Mailroute, postfix: Postfix, tmp_path: Path
) -> None:
    destination = postfix.mailbox("swaks")
    alias = await mailroute.forward("swaks@example.org", destination)
    sent = message(SENDER, alias, "Sent with swaks")
    # swaks ends DATA with <CRLF>.<CRLF> after the file, whose last line break would
    # otherwise be an empty line more.
    (tmp_path / "message.eml").write_bytes(sent.removesuffix(b"\r\n"))

    status, transcript = await swaks(*swaks_args(mailroute, alias, tmp_path / "message.eml"))
    await mailroute.deliver()

    assert status == 0, transcript
    assert "<-  250 2.0.0 Message accepted for delivery, queue id " in transcript
    [delivered] = await wait_for(postfix, destination)
    assert delivered.endswith(stored(sent))


async def test_swaks_unknown_recipient_refused(mailroute: Mailroute, tmp_path: Path) -> None:
    unknown = "nobody@example.org"
    (tmp_path / "message.eml").write_bytes(message(SENDER, unknown, "Nobody home"))

    status, transcript = await swaks(*swaks_args(mailroute, unknown, tmp_path / "message.eml"))

    assert status == NO_RCPT_ACCEPTED, transcript
    assert f"<** {replies.S550_UNKNOWN_ADDRESS.format(address=unknown)}" in transcript
    assert await mailroute.stored_messages() == 0


async def test_swaks_inline_refusal_fails_data(
    mailroute_inline: Mailroute, postfix: Postfix, tmp_path: Path
) -> None:
    alias = await mailroute_inline.forward("refused@example.org", UNKNOWN_MAILBOX)
    (tmp_path / "message.eml").write_bytes(message(SENDER, alias, "Refused downstream"))

    status, transcript = await swaks(*swaks_args(mailroute_inline, alias, tmp_path / "message.eml"))

    assert status == DATA_NOT_ACCEPTED, transcript
    assert f"<** 550 5.1.1 <{alias}>: " in transcript
