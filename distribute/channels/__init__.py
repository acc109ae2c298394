"""Channels deliver finished messages: SMTP for real, an outbox for dry runs."""
