"""A client for rspamd's HTTP protocol: one message and its envelope in, a ``Spam`` verdict out.

rspamd's normal worker (or its proxy) answers ``POST /checkv2``: the request body is the
message exactly as received, the SMTP envelope travels in request headers (IP, Helo, From,
Rcpt once per recipient, Queue-Id, MTA-Name), and the reply is a JSON object whose
``action`` and ``score`` we keep (https://rspamd.com/doc/developers/protocol.html).

rspamd is a peer on the network, so its reply is hostile until checked: the body is read
up to ``MAX_REPLY_BYTES``, the whole exchange within ``timeout`` seconds, and anything
that is not a JSON object with a known action and a finite score raises
``SpamFilterUnavailable`` (as do refused connections and timeouts), so that the caller's
failure policy decides, never a half-parsed verdict.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Sequence

import httpx

from app.errors import SpamFilterUnavailable
from app.inbound_auth.verdicts import Spam

__all__ = ["MAX_REPLY_BYTES", "Rspamd", "SpamFilterUnavailable"]

logger = logging.getLogger(__name__)

# A verdict is a few KiB of JSON (its symbols); a megabyte is far past any honest reply.
MAX_REPLY_BYTES = 1024 * 1024

# rspamd's action names (its actions.conf), and the spellings with "_" its configuration
# also accepts. "discard" and "quarantine" (forced or custom actions) ask to keep the
# message from its recipient; with no quarantine of our own, the conservative reading is
# to refuse it, so that the sender learns of it rather than losing it silently.
ACTIONS = {
    "reject": "reject",
    "discard": "reject",
    "quarantine": "reject",
    "soft reject": "soft reject",
    "soft_reject": "soft reject",
    "greylist": "greylist",
    "rewrite subject": "rewrite subject",
    "rewrite_subject": "rewrite subject",
    "add header": "add header",
    "add_header": "add header",
    "no action": "no action",
    "no_action": "no action",
}


class Rspamd:
    """A pooled connection to one rspamd worker, e.g. ``Rspamd("http://127.0.0.1:11333")``."""

    def __init__(self, url: str, *, timeout: float = 10.0, password: str | None = None) -> None:
        try:
            base = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not an http(s) URL for rspamd: {url!r}") from exc
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"not an http(s) URL for rspamd: {url!r}")
        self._url = base.copy_with(path=base.path.rstrip("/") + "/checkv2")
        self._timeout = timeout
        self._password = password
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            # rspamd is named by its URL alone: no proxy from the environment, no redirect.
            trust_env=False,
            follow_redirects=False,
        )

    async def check(
        self,
        content: bytes | bytearray,
        *,
        client_ip: str | None,
        helo: str | None,
        mail_from: str,
        recipients: Sequence[str],
        queue_id: str,
        hostname: str,
    ) -> Spam:
        """rspamd's verdict on ``content`` (sent byte for byte, never decoded).

        ``mail_from`` "" is the null sender; ``hostname`` is this MTA's name (MTA-Name,
        which rspamd writes into the Received field it imagines for the message). The
        client's reverse DNS name is not sent: rspamd looks it up itself.
        """
        headers = _envelope_headers(client_ip, helo, mail_from, recipients, queue_id, hostname)
        if self._password is not None:
            headers.append((b"Password", _header_value(self._password)))
        try:
            # httpx's timeouts bound each read; this bounds the whole exchange, so that a
            # reply trickled a byte at a time cannot hold the SMTP session open.
            async with asyncio.timeout(self._timeout):
                status, body = await self._post(bytes(content), headers)
        except TimeoutError as exc:
            raise _unavailable(f"no reply within {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise _unavailable(f"{type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise _unavailable(f"HTTP status {status}")
        return parse_reply(body)

    async def _post(self, content: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
        # identity only: a compressed reply could expand past the size bound in one step.
        headers.append((b"Accept-Encoding", b"identity"))
        request = self._client.build_request("POST", self._url, content=content, headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise _unavailable("a compressed reply")
            declared = response.headers.get("Content-Length", "0")
            if declared.isdigit() and int(declared) > MAX_REPLY_BYTES:
                raise _unavailable(f"a reply of {declared} bytes")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_REPLY_BYTES:
                    raise _unavailable(f"a reply over {MAX_REPLY_BYTES} bytes")
            return response.status_code, bytes(body)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


def _envelope_headers(
    client_ip: str | None,
    helo: str | None,
    mail_from: str,
    recipients: Sequence[str],
    queue_id: str,
    hostname: str,
) -> list[tuple[bytes, bytes]]:
    """The envelope as rspamd's protocol names it; Rcpt repeats, one per recipient."""
    headers: list[tuple[bytes, bytes]] = []
    if client_ip:
        headers.append((b"IP", _header_value(client_ip)))
    if helo:
        headers.append((b"Helo", _header_value(helo)))
    # RFC 5321 4.5.5: the null reverse-path is <>.
    headers.append((b"From", _header_value(mail_from) if mail_from else b"<>"))
    headers += [(b"Rcpt", _header_value(r)) for r in recipients]
    headers.append((b"Queue-Id", _header_value(queue_id)))
    headers.append((b"MTA-Name", _header_value(hostname)))
    return headers


def _header_value(value: str) -> bytes:
    # UTF-8 for SMTPUTF8 addresses (RFC 6531); control characters cannot come from an SMTP
    # command line, and one here would end the HTTP header early, so none is passed on.
    return "".join(c for c in value if c >= " " and c != "\x7f").encode("utf-8")


def parse_reply(body: bytes) -> Spam:
    """The verdict in rspamd's JSON reply; anything else is ``SpamFilterUnavailable``."""
    try:
        reply = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError: also bad UTF-8; deep nesting
        raise _unavailable("a reply that is not JSON") from exc
    if not isinstance(reply, dict):
        raise _unavailable("a reply that is not a JSON object")
    action = reply.get("action")
    if not isinstance(action, str) or action.lower() not in ACTIONS:
        raise _unavailable(f"an unknown action {str(action)[:40]!r}")
    score = _number(reply.get("score"))
    if score is None:
        raise _unavailable("a score that is not a number")
    required = _number(reply.get("required_score"))
    return Spam(action=ACTIONS[action.lower()], score=score, required=required)


def _number(value: object) -> float | None:
    """A finite float, or None (bool is an int to Python, not a score to us)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def _unavailable(reason: str) -> SpamFilterUnavailable:
    logger.warning("rspamd unavailable: %s", reason)
    return SpamFilterUnavailable(f"rspamd: {reason}")
