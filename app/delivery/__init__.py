"""Outbound: resolve MX, relay with aiosmtplib, retry temporary failures, bounce permanent ones."""
