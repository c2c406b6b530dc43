"""Verification links never reach a log line.

``/v1/verify/{token}`` carries a single-use credential (app.api.routes.verify): an access
log line with it would let whoever reads the logs confirm an inbox they do not own. The
path is redacted where log records are made (logging's record factory), so that every
handler and formatter sees only the redacted text: uvicorn's access log, our own lines,
and an operator's own logging configuration alike.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

# Up to the end of the request target: uvicorn writes a '"' in a path as %22.
VERIFY_PATH = re.compile(r"/v1/verify/[^\s\"]*", re.IGNORECASE)
REDACTED = "/v1/verify/[redacted]"


def redact(text: str) -> str:
    """``text`` with every verification path's token (and what follows it) redacted."""
    if "%" in text:
        # uvicorn logs the raw path, and /v1/%76erify/... is routed to the same page.
        decoded = unquote(text)
        if VERIFY_PATH.search(decoded):
            return VERIFY_PATH.sub(REDACTED, decoded)
    return VERIFY_PATH.sub(REDACTED, text)


def redact_record(record: logging.LogRecord) -> None:
    """Redact the message and its string arguments in place; the arguments keep their
    positions, as uvicorn's AccessFormatter unpacks them."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_redacted(arg) for arg in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {key: _redacted(value) for key, value in record.args.items()}


def _redacted(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactingFactory:
    def __init__(self, make: Any) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.make(*args, **kwargs)
        redact_record(record)
        return record


def install() -> None:
    """Redact every record made in this process from now on; calling it again is harmless."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, RedactingFactory):
        logging.setLogRecordFactory(RedactingFactory(current))
