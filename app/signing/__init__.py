"""Our own DKIM signature and ARC seal on forwarded copies: keys, signing."""
