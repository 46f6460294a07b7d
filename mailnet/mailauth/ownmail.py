"""
DKIM signatures for the mail the server writes itself: the queue's DSNs
(RFC 3464: failures, successes) and delay warnings.  Their From is
``MAILER-DAEMON@<hostname>``, our domain, so receivers check them like any
mail of ours: each is signed with the keys of the hostname's domain (or the
nearest parent domain that has keys, which DMARC's relaxed alignment
accepts), once, before it is spooled, so the queue's retries send the same
signed bytes.  ``[mailauth] sign = false`` turns it off, as for our users'
mail.  Vacation auto-replies (mailnet/vacation.py) are signed the same way,
with the keys of the user's domain (their From).
"""

from __future__ import annotations

from mailnet.logs import Logger
from mailnet.mailauth import keys as keysmod

log = Logger()


class OwnMailSigner:
    """
    @param config: the :class:`~mailnet.config.Config`.
    @param clock: ``IReactorTime``.
    """

    def __init__(self, config, clock):
        self.enabled = config.mailauth.sign
        self.maxSize = config.mailauth.max_size
        self.ring = keysmod.KeyRing(config.server.data_dir, clock, log)

    def keysFor(self, hostname) -> list:
        """The keys to sign with (reactor thread); [] for none."""
        if not self.enabled:
            return []
        return self.ring.forHost(hostname)

    def sign(self, message: bytes, keys) -> bytes:
        """``message`` (CRLF form) with its DKIM-Signature fields before it;
        unchanged when there are no keys or signing fails (logged: the report
        must still go).  Blocking: call in a worker thread."""
        if not keys:
            return message
        if len(message) > self.maxSize:
            log.warn("a report of ours is not DKIM-signed: larger than [mailauth] max_size")
            return message
        try:
            from mailnet.mailauth import dkimsign

            return dkimsign.sign(message, keys) + message
        except Exception:
            log.failure("DKIM signing of a report failed; it goes unsigned")
            return message
