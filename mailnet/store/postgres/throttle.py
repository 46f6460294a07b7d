"""
The login failure throttle's counts shared by every node on the database
(schema version 6, ``login_failures``): the ``shared`` of
:class:`mailnet.login.AuthThrottle` (its :class:`~mailnet.login.ISharedFailures`
rows, ``(kind, key) -> count, last``, times in epoch seconds of the node
that wrote them).  Each method is one short transaction in the store's
worker threads.  Rows older than the window (trusts: older than their
lifetime) are deleted by the failure path, at most once a minute per node.
"""

from __future__ import annotations

import time

PRUNE_EVERY = 60.0


def _read(conn, names, now=None, window=None):
    if not names:
        return {}
    kinds = [kind for kind, _ in names]
    keys = [key for _, key in names]
    found = {}
    for kind, key, count, last in conn.execute(
            "SELECT l.kind, l.key, l.count, l.last FROM login_failures l"
            " JOIN unnest(%s::text[], %s::text[]) AS n(kind, key) ON l.kind = n.kind AND l.key = n.key",
            (kinds, keys)):
        if now is None or kind == "trusted" or now - last <= window:
            found[(kind, key)] = (count, last)
    return found


def _failed(conn, counted, names, now, window, prune):
    for kind, key in sorted(counted):  # one order: two nodes never deadlock
        conn.execute(
            "INSERT INTO login_failures (kind, key, count, last) VALUES (%s, %s, 1, %s)"
            " ON CONFLICT (kind, key) DO UPDATE SET"
            " count = CASE WHEN %s - login_failures.last > %s THEN 1 ELSE login_failures.count + 1 END,"
            " last = GREATEST(login_failures.last, EXCLUDED.last)",
            (kind, key, now, now, window))
    if prune is not None:
        conn.execute("DELETE FROM login_failures WHERE kind <> 'trusted' AND last < %s", (now - window,))
        conn.execute("DELETE FROM login_failures WHERE kind = 'trusted' AND last < %s", (now - prune,))
    return _read(conn, names, now, window)


def _succeeded(conn, ip, account, pair, now, window, trustSeconds):
    row = conn.execute("DELETE FROM login_failures WHERE kind = 'pair' AND key = %s RETURNING count, last",
                       (pair,)).fetchone()
    if row is not None and now - row[1] <= window:
        conn.execute("UPDATE login_failures SET count = count - %s WHERE kind = 'ip' AND key = %s", (row[0], ip))
        conn.execute("DELETE FROM login_failures WHERE kind = 'ip' AND key = %s AND count <= 0", (ip,))
    if account is not None:
        conn.execute("DELETE FROM login_failures WHERE kind = 'account' AND key = %s", (account,))
        conn.execute(
            "INSERT INTO login_failures (kind, key, count, last) VALUES ('trusted', %s, 0, %s)"
            " ON CONFLICT (kind, key) DO UPDATE SET last = GREATEST(login_failures.last, EXCLUDED.last)",
            (pair, now))


class PostgresFailures:
    """The throttle's shared counts in ``login_failures`` (see the module docstring)."""

    def __init__(self, db, trustSeconds=7 * 86400):
        self.db = db
        self.trustSeconds = trustSeconds
        self._pruned = 0.0

    def read(self, names):
        return self.db.run(_read, names) if names else _nothing()

    def failed(self, counted, names, now, window):
        prune = None
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self._pruned = time.monotonic()
            prune = self.trustSeconds
        return self.db.run(_failed, counted, names, now, window, prune)

    def succeeded(self, ip, account, pair, now, window, trustSeconds):
        return self.db.run(_succeeded, ip, account, pair, now, window, trustSeconds)


def _nothing():
    from twisted.internet import defer

    return defer.succeed({})
