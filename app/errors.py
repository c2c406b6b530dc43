"""mailroute's exceptions. Services raise these; the edges map them (API: status + JSON).

Every class has a ``code``: the stable, machine-readable name the API puts in
``{"error": {"code", "message"}}``.

    MailrouteError
    ├── NotFound                  a named thing does not exist (404)
    │   ├── DomainNotFound
    │   ├── AliasNotFound
    │   ├── DestinationNotFound
    │   ├── TokenNotFound
    │   ├── BlockNotFound
    │   └── QueueItemNotFound
    ├── Conflict                  the request clashes with the current state (409)
    │   ├── DomainExists
    │   ├── AliasExists
    │   ├── DestinationExists
    │   ├── DestinationInUse       a destination still used by rules cannot be deleted
    │   ├── BlockExists            the same sender is already blocked with the same scope
    │   ├── AlreadyVerified        resending verification for a verified destination
    │   └── QueueItemBusy          a delivery being attempted right now
    ├── InvalidInput              well-formed request, unacceptable value (422)
    │   ├── InvalidAddress         not an email address we can route or forward to
    │   ├── InvalidDomain          not a domain name
    │   ├── InvalidLocalPart       not usable as the part before the @
    │   ├── InvalidRule            e.g. a forward rule without destinations
    │   ├── UnknownDestination     a rule names an inbox not added as a destination
    │   └── UndeliverableDomain    the destination's domain cannot receive mail (RFC 7505)
    ├── RateLimited               too many of one request; says when to retry (429)
    │   └── ResendLimited          a verification message already sent less than 5 minutes
    │                               ago, or 10 in the last day, to that destination
    ├── VerificationFailed        a verification link never issued, used or expired (404):
    │                               one answer for all three, so a guess learns nothing
    ├── DnsError                  raised by app.resolver, translated from dnspython
    │   ├── DnsNoSuchDomain        NXDOMAIN: an authoritative "does not exist"
    │   └── DnsTemporaryFailure    timeout, SERVFAIL, no nameserver reachable
    ├── SpamFilterUnavailable     raised by app.inbound_auth.rspamd: the content filter could
    │                               not be reached, took too long, or answered nonsense
    └── SigningError              raised by app.signing.sign: a key that cannot be used, or a
        │                           message dkimpy cannot sign (never says the key)
        └── SigningKeyInvalid      raised by app.signing.keys: MAILROUTE_DKIM_KEY_FILE cannot
                                     be read, is not an RSA key, or is under 1024 bits
"""

from __future__ import annotations


class MailrouteError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(MailrouteError):
    code = "not_found"


class DomainNotFound(NotFound):
    code = "domain_not_found"


class AliasNotFound(NotFound):
    code = "alias_not_found"


class DestinationNotFound(NotFound):
    code = "destination_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class BlockNotFound(NotFound):
    code = "block_not_found"


class Conflict(MailrouteError):
    code = "conflict"


class DomainExists(Conflict):
    code = "domain_exists"


class AliasExists(Conflict):
    code = "alias_exists"


class DestinationExists(Conflict):
    code = "destination_exists"


class DestinationInUse(Conflict):
    code = "destination_in_use"


class BlockExists(Conflict):
    code = "block_exists"


class AlreadyVerified(Conflict):
    code = "already_verified"


class InvalidInput(MailrouteError):
    code = "invalid_input"


class InvalidAddress(InvalidInput):
    code = "invalid_address"


class InvalidDomain(InvalidInput):
    code = "invalid_domain"


class InvalidLocalPart(InvalidInput):
    code = "invalid_local_part"


class InvalidRule(InvalidInput):
    code = "invalid_rule"


class UndeliverableDomain(InvalidInput):
    code = "undeliverable_domain"


class RateLimited(MailrouteError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # whole seconds, at least 1


class ResendLimited(RateLimited):
    code = "resend_limited"


class VerificationFailed(MailrouteError):
    code = "verification_failed"


class DnsError(MailrouteError):
    code = "dns_error"


class DnsNoSuchDomain(DnsError):
    code = "dns_no_such_domain"


class DnsTemporaryFailure(DnsError):
    code = "dns_temporary_failure"


class UnknownDestination(InvalidInput):
    code = "unknown_destination"


class QueueItemNotFound(NotFound):
    code = "queue_item_not_found"


class QueueItemBusy(Conflict):
    code = "queue_item_busy"


class SpamFilterUnavailable(MailrouteError):
    code = "spam_filter_unavailable"


class SigningError(MailrouteError):
    code = "signing_failed"


class SigningKeyInvalid(SigningError):
    code = "signing_key_invalid"
