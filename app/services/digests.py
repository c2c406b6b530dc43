"""How secrets we hand out (API tokens, verification links) are stored: SHA-256 only."""

from __future__ import annotations

import hashlib


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
