"""DKIM keys for tests: a private key as dkimpy signs with it, and the key record to
publish at ``<selector>._domainkey.<domain>`` (RFC 6376 3.6.1)."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.peers.tools import require_tool


@dataclass(frozen=True)
class Key:
    private: bytes  # as dkimpy's sign takes it: PEM for RSA, base64 seed for ed25519
    record: str  # the TXT value at <selector>._domainkey.<domain>


def rsa_key(directory: Path) -> Key:
    """A 2048-bit RSA key made with openssl (Debian package openssl)."""
    openssl = require_tool("openssl", "openssl")
    path = directory / "key.pem"
    run = {"check": True, "capture_output": True, "timeout": 60}
    subprocess.run([openssl, "genrsa", "-traditional", "-out", str(path), "2048"], **run)
    public = subprocess.run(
        [openssl, "rsa", "-in", str(path), "-pubout", "-outform", "DER"], **run
    ).stdout
    return Key(path.read_bytes(), f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}")


def txt_strings(text: str) -> str:
    """``text`` as dnsmasq's --txt-record takes it: comma-separated strings of at most 255
    octets (RFC 1035 3.3.14), which a verifier joins again (RFC 7208 3.3, RFC 6376
    3.6.2.2). dnsmasq would also cut a longer one itself; we say where."""
    return ",".join(text[i : i + 255] for i in range(0, len(text), 255))


def ed25519_key() -> Key:
    """An ed25519 key (RFC 8463) made with PyNaCl, dkimpy's ed25519 library."""
    import nacl.encoding
    import nacl.signing

    key = nacl.signing.SigningKey.generate()
    public = key.verify_key.encode(nacl.encoding.Base64Encoder).decode()
    return Key(key.encode(nacl.encoding.Base64Encoder), f"v=DKIM1; k=ed25519; p={public}")
