"""
The POP3 maildrop lock (RFC 1939 s8) of a store used by one process
(re-exported by :mod:`mailnet.store.interfaces`).
"""

from __future__ import annotations

from twisted.internet import defer


class ProcessMaildropLocks:
    """
    The maildrop lock of a store used by one process (Maildir, memory) and
    POP3's own for a store without :meth:`mailnet.store.interfaces.IMailStore.maildropLock`: a set
    of usernames.  ``acquire(username)`` is that method.
    """

    def __init__(self):
        self.held: set[str] = set()

    def acquire(self, username):
        if username in self.held:
            return defer.succeed(None)
        self.held.add(username)
        return defer.succeed(_HeldName(self.held, username))


class _HeldName:
    def __init__(self, held, username):
        self._held, self._username = held, username

    def release(self):
        held, self._held = self._held, None
        if held is not None:
            held.discard(self._username)
