"""Every reply the server chooses itself, a named constant with its code in the name.

aiosmtpd's own replies (syntax errors, 552 for a message over the size limit, ...) get
their enhanced status code added in app.smtp.enhanced_codes.

Enhanced status codes are RFC 3463 (and RFC 5248's registry); each reply says which
situation of RFC 5321 it answers.
"""

from app.routing import Decision, Refusal

S250_SENDER_OK = "250 2.1.0 Sender OK"
S250_RECIPIENT_OK = "250 2.1.5 Recipient OK"
S250_QUEUED = "250 2.0.0 Message accepted for delivery, queue id {queue_id}"
S250_DELIVERED = "250 2.0.0 Message delivered, queue id {queue_id}"
S250_DROPPED = "250 2.0.0 Message accepted"

# RFC 5321 3.6.2: an MX that is not the final destination must refuse to relay.
S550_RELAY_DENIED = "550 5.7.1 Relay access denied: {domain} is not served here"
S550_UNKNOWN_ADDRESS = "550 5.1.1 <{address}>: Recipient address rejected: no such address"
S550_BAD_SRS = (
    "550 5.1.1 <{address}>: Recipient address rejected: invalid or expired bounce address"
)
# RFC 3463 X.7.1 (delivery not authorized): our SRS addresses take bounces only, which
# come from <> (RFC 5321 4.5.5, RFC 3464, RFC 3834 3.3).
S550_SRS_NOT_BOUNCE = (
    "550 5.7.1 <{address}>: Recipient address rejected: "
    "a bounce address, only for mail from the null sender <>"
)
# RFC 3463 X.7.1 (delivery not authorized): the owner blocked this sender for the address
# (app.routing.blocks). RCPT, not DATA: the client keeps the message and bounces it.
S550_BLOCKED_SENDER = (
    "550 5.7.1 <{address}>: Recipient address rejected: "
    "mail from this sender is blocked for this address"
)
S550_NO_POSTMASTER = (
    "550 5.1.1 <{address}>: Recipient address rejected: no postmaster is configured"
)
# RFC 5321 4.1.2: a Quoted-string local part that is not a Dot-string could not be passed
# on safely inside our SRS address; RFC 3463 X.1.7, bad sender mailbox syntax.
S553_SENDER_NOT_FORWARDABLE = (
    "553 5.1.7 Sender address rejected: only plain local-part@domain senders are accepted"
)
# After DATA, when every recipient's rule was disabled, expired or used up (max_messages)
# since RCPT accepted it: the answer RCPT would now give (550 5.1.1, RFC 3463 X.1.1), for
# the whole message. Not X.2.2 "mailbox full": that is a quota that may clear (Postfix
# answers it with 452 4.2.2), and the client would retry for days; a used-up alias stays
# used up, and like RCPT we do not tell a stranger that it existed.
S550_NO_RECIPIENT_LEFT = "550 5.1.1 Recipient address rejected: no such address"
# Postfix's wording and codes for an address that does not parse (RFC 3463 X.1.3, X.1.7).
S501_BAD_ADDRESS = "501 5.1.3 Bad recipient address syntax"
# Also a sender with a control character (aiosmtpd splits command lines at LF only, so a
# bare CR gets through): it would reach our DSN's header and the next hop's MAIL FROM.
S501_BAD_SENDER = "501 5.1.7 Bad sender address syntax"
# Postfix's reject_invalid_helo_hostname; we only refuse control characters and non-UTF-8.
S501_BAD_HELO = "501 5.5.2 Invalid HELO/EHLO hostname"
# RFC 5321 4.5.3.1.3 and 4.5.3.1.10: a path is at most 256 octets, "501 Path too long".
S501_SENDER_TOO_LONG = "501 5.1.7 Path too long"
# RFC 5321 4.5.3.1.8: at least 100 recipients must be buffered; more get a 452.
S452_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
# Never a 5xx and never an accept when we cannot decide: the client will retry.
S451_TEMPORARY_FAILURE = "451 4.3.0 Temporary local problem; please try again later"
S452_STORAGE = "452 4.3.1 Insufficient system storage; please try again later"
# RFC 5321 4.2.5 and RFC 3463 X.3.1: the messages in transit fill the memory set aside
# for them (app.smtp.limits.MemoryBudget), at DATA or at the end of the text.
S452_NO_ROOM = "452 4.3.1 Insufficient system storage: too much mail in transit, try again later"
# RFC 5321 2.3.8: CR and LF only as CRLF. A bare one is how SMTP smuggling hides an
# end-of-data from one server and not another; Postfix 3.9 smtpd_forbid_bare_newline=reject
# answers this with 550 5.5.2. We refuse rather than repair: content stays untouched.
S550_BARE_NEWLINE = (
    "550 5.5.2 Message refused: bare <CR> or <LF> received; lines must end in <CR><LF>"
)
# RFC 5321 4.5.3.1.10 and RFC 1870: the text went over the size limit (aiosmtpd's words).
S552_TOO_MUCH_DATA = "552 5.3.4 Error: Too much mail data"
# RFC 5321 4.5.3.1.6 and 4.5.3.1.10: 1000 octets per line with the CRLF, else "500 Line
# too long". We never fold a line (content stays untouched), so the message is refused.
S500_LINE_TOO_LONG = "500 5.5.2 Line too long: at most 1000 octets with the <CR><LF>"
# RFC 5321 6.3: a loop shows as too many Received: headers.
S554_LOOP = "554 5.4.6 Too many Received: headers, mail loop detected"
# Sent to new connections while the server drains before stopping (RFC 5321 3.8).
S421_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
# Connection limits (RFC 5321 3.8, as Postfix's anvil): the client should come back later.
S421_TOO_MANY_FROM_YOU = "421 4.7.0 Too many connections from your address, try again later"
S421_TOO_MANY_CONNECTIONS = "421 4.3.2 Too many connections, try again later"
# A DNS blocklist lists the client (app.smtp.blocklists): Postfix's reject_rbl_client
# words, said instead of the greeting (RFC 5321 3.1, 4.2.5: 554 at connect; RFC 3463
# X.7.1, not authorized). Then every command but QUIT hears Postfix's 503 5.7.0.
S554_BLOCKLISTED = "554 5.7.1 Service unavailable; Client host [{ip}] blocked using {zone}"
S503_ACCESS_DENIED = "503 5.7.0 Error: access denied for unknown[{ip}]"
S221_BYE = "221 2.0.0 Bye"
# The penalty box (app.smtp.limits.PenaltyBox): too many forged bounce addresses.
S421_PENALTY = "421 4.7.0 Too many invalid bounce addresses from your address, try again later"
# Session limits (app.smtp.limits), worded as Postfix's smtpd. RFC 5321 3.8: a 421 names
# the server, and the server closes the connection after it.
S421_TIMEOUT = "421 4.4.2 {hostname} Error: timeout exceeded"
S421_TOO_MANY_ERRORS = "421 4.7.0 {hostname} Error: too many errors"
# RFC 5321 4.2.5 (450) and RFC 3463 X.7.1: refused by policy for now; retry later.
S450_TOO_MUCH_MAIL = "450 4.7.1 Error: too much mail from {ip}, try again later"
# aiosmtpd's own words for DATA, which app.smtp.protocol answers itself (RFC 5321 4.1.1.4,
# 3.3: DATA needs a recipient and takes no argument). Like aiosmtpd's replies they get
# their enhanced status code when sent (app.smtp.enhanced_codes.with_enhanced_code); the 354
# goes without one (RFC 2034 3).
S354_END_DATA = "354 End data with <CR><LF>.<CR><LF>"
S503_NEED_RCPT = "503 Error: need RCPT command"
S501_SYNTAX_DATA = "501 Syntax: DATA"
S250_OK = "250 OK"  # a handler that has no handle_DATA
# This is an MX, not a submission server (RFC 6409): there is nothing to log in to.
S503_NO_AUTH = "503 5.5.1 Error: authentication not enabled"

# Refusals at the end of DATA by the inbound checks (app.inbound_auth.policy); never a
# bounce, the client tells its sender. RFC 7372 X.7.26: authentication checks failed
# (Gmail's wording for DMARC), X.7.24: SPF could not be evaluated.
S550_DMARC_REJECT = (
    "550 5.7.26 Unauthenticated email from {domain} is not accepted due to the domain's "
    "DMARC policy (p=reject)"
)
S550_UNAUTHENTICATED = (
    "550 5.7.26 Unauthenticated email is not accepted: neither SPF nor a DKIM signature "
    "passes (spf={spf}, dkim={dkim})"
)
S451_SPF_TEMPERROR = (
    "451 4.7.24 SPF of {domain} could not be checked (temporary DNS error); try again later"
)
S451_AUTH_TEMPERROR = (
    "451 4.7.26 The message could not be authenticated (temporary DNS error); try again later"
)
# RFC 3463 X.7.1: the content filter (rspamd) refused the message.
S550_SPAM = "550 5.7.1 Message refused as spam"
S451_SPAM_DEFERRED = "451 4.7.1 Message deferred by the spam filter; try again later"
S451_SPAM_FILTER_UNAVAILABLE = "451 4.7.1 The spam filter is unavailable; try again later"


def refusing(address: str, decision: Decision) -> str:
    """The reply to RCPT for a recipient the routing core refuses."""
    if decision.refusal is Refusal.DOMAIN_NOT_SERVED:
        return S550_RELAY_DENIED.format(domain=address.rpartition("@")[2] or address)
    by_refusal = {
        Refusal.BAD_SRS: S550_BAD_SRS,
        Refusal.SRS_NOT_BOUNCE: S550_SRS_NOT_BOUNCE,
        Refusal.NO_POSTMASTER: S550_NO_POSTMASTER,
        Refusal.BLOCKED_SENDER: S550_BLOCKED_SENDER,
    }
    reply = by_refusal.get(decision.refusal, S550_UNKNOWN_ADDRESS) if decision.refusal else None
    return (reply or S550_UNKNOWN_ADDRESS).format(address=address)
