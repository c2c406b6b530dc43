"""RFC 3463 enhanced status codes (RFC 2034, ENHANCEDSTATUSCODES) on replies that come
without one: aiosmtpd's own, and the few of app.smtp.replies worded as aiosmtpd's."""

from __future__ import annotations

import re

# The code each basic reply code gets when it comes without one.
DEFAULT_ENHANCED = {
    "221": "2.0.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.5.0",
    "421": "4.3.0",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",  # RFC 3207 4: TLS not available
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(\s|$)")
# RFC 2034 3: the greeting and the answers to HELO/EHLO carry no enhanced code.
PLAIN_CODES = ("220", "354", "334")


def with_enhanced_code(reply: str) -> str:
    """``reply`` with the enhanced code of its basic code added, unless it has one or
    takes none."""
    code = reply[:3]
    if code in PLAIN_CODES or HAS_ENHANCED.match(reply) or code not in DEFAULT_ENHANCED:
        return reply
    separator, text = reply[3:4] or " ", reply[4:]
    return f"{code}{separator}{DEFAULT_ENHANCED[code]} {text}".rstrip()
