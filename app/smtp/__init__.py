"""The inbound SMTP server (aiosmtpd): RCPT decided by the routing core, DATA stored durably."""
