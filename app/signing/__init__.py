"""Our own DKIM signature and ARC seal on forwarded copies: keys, signing.

``keys`` holds a signing key and its DNS record, pure (no database); the keys every node
shares are kept by app.services.signing_keys. ``sign`` makes the fields we prepend.
"""
