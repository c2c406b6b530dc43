"""Inbound trust: what the checks of an incoming message find (SPF, DKIM, DMARC, ARC, a
spam filter), the policy that turns those verdicts into a reply, and the
Authentication-Results field that carries them to the destination.

The verdicts and the policy are pure (``verdicts.py``, ``policy.py``, ``dmarc.py``); the
checks that ask DNS or rspamd live in their own modules, and ``checker.py`` runs them
together, concurrently with the SMTP session.
"""
