"""
QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT, SETQUOTA (refused: limits are
the administrator's, ``[quota]`` and the users file), and the check that
APPEND and COPY make before storing (``NO [OVERQUOTA]``, RFC 9208 s5).

An account has one quota root, ``""``, over all its mailboxes (the store
counts the whole account: docs/store.md "Quota"), with the resources
STORAGE (in units of 1024 octets, RFC 9208 s5.1) and MESSAGE (s5.2); a
resource without a limit is not shown, and a user without limits has no
quota root (``* QUOTAROOT INBOX`` alone, s4.3).

On the protocol shape (docs/design.md): the store's ``quota`` and
``checkQuota`` are yielded ``StoreCall`` effects.
"""

from __future__ import annotations

from mailnet.imap import serialize
from mailnet.imap.commands.common import no
from mailnet.imap.effects import StoreCall
from mailnet.store.interfaces import OverQuota

ROOT = ""  # the account's one quota root

# Advertised after login (RFC 9208 s3.1); no QUOTASET: SETQUOTA is refused.
CAPABILITIES = [b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"]


def quotaLine(usage) -> bytes:
    """``* QUOTA "" (STORAGE used limit MESSAGE used limit)`` (RFC 9208 s5)."""
    parts = []
    limits = usage.limits
    if limits.storage:
        # RFC 9208 s5.1: units of 1024 octets, rounded up.
        parts.append(b"STORAGE %d %d" % ((usage.storage + 1023) // 1024, limits.storage // 1024))
    if limits.messages:
        parts.append(b"MESSAGE %d %d" % (usage.messages, limits.messages))
    return b"* QUOTA " + serialize.astring(ROOT) + b" (" + b" ".join(parts) + b")\r\n"


class QuotaCommands:
    """QUOTA commands of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def _quota(self):
        if getattr(self.account, "quota", None) is None:
            return None  # a store without quotas: no quota root
        return (yield StoreCall(self.account, "quota"))

    def cmdGetquotaroot(self, cmd):
        name = self.decodeName(cmd.mailbox)
        # RFC 9208 s4.3: NO for a mailbox that does not exist (the store's
        # NoSuchFolder becomes NO [NONEXISTENT]).
        folder = yield StoreCall(self.account, "openFolder", (name,))
        self.closeFolder(folder)
        usage = yield from self._quota()
        limited = usage is not None and usage.limits.limited
        line = b"* QUOTAROOT " + self.encodeName(name)
        if limited:
            line += b" " + serialize.astring(ROOT)
        self.send(line + b"\r\n")
        if limited:
            self.send(quotaLine(usage))

    def cmdGetquota(self, cmd):
        usage = yield from self._quota()
        if cmd.root != ROOT.encode() or usage is None or not usage.limits.limited:
            raise no("No such quota root", b"NONEXISTENT")
        self.send(quotaLine(usage))

    def cmdSetquota(self, cmd):
        # RFC 9208 s4.4: a server may refuse; ours are set by the administrator.
        raise no("Quotas are set by the administrator", b"NOPERM")

    def checkQuota(self, size, count=1):
        """
        Before APPEND or COPY: ``NO [OVERQUOTA]`` (RFC 9208 s5) when the
        messages would not fit.  A store without quotas checks nothing.
        """
        if getattr(self.account, "checkQuota", None) is None:
            return
        try:
            yield StoreCall(self.account, "checkQuota", (size, count))
        except OverQuota as e:
            raise no("Quota exceeded: " + str(e), b"OVERQUOTA")
