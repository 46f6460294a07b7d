"""
SRS for the mail we forward (``[srs]``): the secret, the envelope sender the
queue relays with, and the inbound side (a bounce to an SRS address of
ours goes back to the original sender).  The address format is
:mod:`mailnet.mail.srs` (pure); this module holds the file and the rules.

    data_dir/srs/secret     one key a line, 0600; the first signs, every
                            line verifies (add a new first line to change
                            keys, drop the old one after max_age days)

The secret is made once, when the first forwarded message needs it, and is
never logged.
"""

from __future__ import annotations

import os
import secrets as secretsmod

from mailnet import durable
from mailnet.logs import Logger
from mailnet.mail import srs
from mailnet.mail.reply import Reply

log = Logger()


def secretPath(dataDir: str) -> str:
    return os.path.join(dataDir, "srs", "secret")


class SRSRewriter:
    """
    One per server: the queue asks :meth:`relaySender`, SMTP's RCPT asks
    :meth:`inbound`.

    @param config: the :class:`~mailnet.config.Config` (``[srs]``, ``[domains]``).
    @param clock: ``IReactorTime``.
    """

    def __init__(self, config, clock):
        s = config.srs
        self.mode = s.enabled
        self.domain = s.domain or config.domains.local[0]
        self.maxAge = s.max_age
        self.localDomains = {d.lower() for d in config.domains.local}
        self.path = secretPath(config.server.data_dir)
        self.clock = clock
        self._secrets = None

    def secrets(self, create: bool = False) -> list[bytes]:
        """The keys ([] when there is no file and ``create`` is false)."""
        if self._secrets:
            return self._secrets
        try:
            with open(self.path, "rb") as f:
                found = srs.parseSecrets(f.read())
        except FileNotFoundError:
            found = []
        if not found and create:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            durable.writeAtomically(self.path, secretsmod.token_urlsafe(32).encode("ascii") + b"\n", mode=0o600)
            log.info("srs: made a new secret in {path}", path=self.path)
            with open(self.path, "rb") as f:
                found = srs.parseSecrets(f.read())
        self._secrets = found or None
        return found

    def _isLocal(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        if domain == self.domain:
            return True
        return any(domain == d or domain.endswith("." + d) for d in self.localDomains)

    def relaySender(self, sender: str, auth: str | None) -> str:
        """
        The MAIL FROM for relaying a message of envelope sender ``sender``
        to another domain: its SRS form when it is forwarded, else itself.
        Not rewritten: the null sender (a bounce), senders of our local
        domains (our users' own mail, SPF already allows us), and with
        ``enabled = "auto"`` mail of an authenticated user.
        """
        if self.mode == "off" or not sender or "@" not in sender:
            return sender
        if self._isLocal(sender.rpartition("@")[2]):
            return sender
        if auth and self.mode != "on":
            return sender
        keys = self.secrets(create=True)
        return srs.forward(sender, self.domain, keys[0], self.clock.seconds())

    def isOurs(self, address: str) -> bool:
        """Whether ``address`` is an SRS address of our SRS domain (valid or not)."""
        if self.mode == "off":
            return False
        return address.rpartition("@")[2].lower().rstrip(".") == self.domain and srs.isSRS(address)

    def inbound(self, address: str, sender: str):
        """
        RCPT TO an SRS address of ours: ``(original, None)`` to route the
        message to, or ``(None, Reply)`` the refusal.  Only bounces (the null
        sender) are taken: an SRS address exists to carry them, and
        anything else sent to it would let strangers use us as a relay.
        """
        keys = self.secrets()
        try:
            if not keys:
                raise srs.SRSError("no SRS secret here")
            original = srs.reverse(address, keys, self.clock.seconds(), self.maxAge)
        except srs.SRSError as e:
            return None, Reply(550, "5.1.1", f"<{address}>: invalid SRS address ({e})")
        if sender:
            return None, Reply(550, "5.7.1", f"<{address}>: an SRS address takes only bounces (MAIL FROM:<>)")
        return original, None
