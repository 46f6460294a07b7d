"""The outbound relay queue: durable spool, scheduler, SMTP client, DSNs."""
