"""The fields we prepend to a checked message: Authentication-Results (RFC 8601) and,
with a content filter, X-Spam-Status and X-Spam-Score. Nothing of the original header
section is changed or removed: the sender's DKIM signature must still verify.

An Authentication-Results field that arrived with the message and claims our authserv-id
is forged (RFC 8601 5): we never read one, and ours is the topmost, so a receiver that
trusts our id reads ours first.
"""

from __future__ import annotations

import authres
import authres.arc
import authres.dmarc

from app.inbound_auth.verdicts import Spam, Verdicts
from app.message import header_safe

FOLD = "\r\n\t"


def authentication_results(authserv_id: str, verdicts: Verdicts, *, mail_from: str) -> bytes:
    """Our Authentication-Results field, folded one method per line; authres quotes the
    values (RFC 8601 2.2)."""
    results: list[authres.AuthenticationResult] = [_spf(verdicts, mail_from)]
    results += _dkim(verdicts)
    dmarc = verdicts.dmarc
    results.append(
        authres.dmarc.DMARCAuthenticationResult(
            result=dmarc.result,
            header_from=_safe(dmarc.from_domain or "") or None,
            policy=dmarc.policy,
            policy_comment=f"dis={dmarc.disposition}" if dmarc.policy else None,
        )
    )
    results.append(authres.arc.ARCAuthenticationResult(result=verdicts.arc.result))
    lines = [f"Authentication-Results: {authserv_id}"] + [str(r) for r in results]
    return (f";{FOLD}".join(lines) + "\r\n").encode("utf-8", "replace")


def _spf(verdicts: Verdicts, mail_from: str) -> authres.AuthenticationResult:
    spf = verdicts.spf
    if spf.identity == "helo":
        return authres.SPFAuthenticationResult(result=spf.result, smtp_helo=_safe(spf.domain))
    return authres.SPFAuthenticationResult(
        result=spf.result, smtp_mailfrom=_safe(mail_from or spf.domain) or None
    )


def _dkim(verdicts: Verdicts) -> list[authres.AuthenticationResult]:
    signatures = verdicts.dkim.signatures
    if not signatures:
        return [authres.DKIMAuthenticationResult(result="none")]
    return [
        authres.DKIMAuthenticationResult(
            result=s.result,
            reason=_safe(s.reason) or None,
            header_d=_safe(s.domain) or None,
            header_s=_safe(s.selector) or None,
            # RFC 6008: header.b tells apart two signatures of one domain.
            properties=[authres.AuthenticationResultProperty("header", "b", _safe(s.header_b))]
            if s.header_b
            else None,
        )
        for s in signatures
    ]


def _safe(text: str) -> str:
    """A value from the network, made safe in a header field (no line breaks)."""
    return header_safe(text)[:255]


def spam_headers(spam: Spam) -> bytes:
    """X-Spam-Status and X-Spam-Score, as SpamAssassin and rspamd write them."""
    flagged = "Yes" if spam.action not in ("no action", "greylist") else "No"
    required = f" required={spam.required:.2f}" if spam.required is not None else ""
    return (
        f"X-Spam-Status: {flagged}, score={spam.score:.2f}{required}"
        f" action={spam.action.replace(' ', '_')}\r\n"
        f"X-Spam-Score: {spam.score:.2f}\r\n"
    ).encode("ascii")
