"""
The webmail's cookie sessions shared by every node on the database (schema
version 11, ``webmail_sessions``): the same contract as the in-memory
:class:`~mailnet.http.session.SessionStore` (docs/webmail.md "Sessions"),
but each method returns a Deferred, so a session made on node A is
accepted on node B and a logout on either ends it on both.

A row holds the SHA-256 of the session id (the id itself is given to the
browser and kept nowhere), the username, the session's CSRF token (the app
reads it back from ``/webmail/session`` after a reload, so the value is
kept, as in memory; it is worthless without the cookie), ``created`` and
``last_seen`` (clock seconds).

Every lookup is a query: no node caches a session, so a logout (or the
removal of the user) on one node holds on every node from its commit on.
Only the "last seen" write is batched: a lookup writes it when the stored
value is :data:`TOUCH` seconds old or more (at most one write a minute per
session), so the idle timeout may end a session up to that much early.

The bounds are those of memory: ``perUser`` sessions per user (a login
past it ends that user's oldest; logins of one user on two nodes take
their turn on an advisory lock) and ``maxSessions`` in all (the least
recently seen end first).  A database outage is
:class:`~mailnet.store.interfaces.TemporaryStoreError` (the HTTP side
answers 503: the session is not ended).
"""

from __future__ import annotations

import secrets

from twisted.internet import defer

from mailnet.http.session import Session, sessionKey as _key

# pg_advisory_xact_lock(USER_LOCK, hashtext(username)): one login of a user at a time (the per-user bound).
USER_LOCK = 7239011
# Seconds between two writes of a session's last_seen (the idle timeout's precision).
TOUCH = 60.0


def _create(conn, key, username, csrf, now, perUser, maxSessions):
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (USER_LOCK, username))
    conn.execute("DELETE FROM webmail_sessions WHERE id_hash IN (SELECT id_hash FROM webmail_sessions"
                 " WHERE username = %s ORDER BY created DESC, id_hash OFFSET %s)", (username, perUser - 1))
    conn.execute("INSERT INTO webmail_sessions (id_hash, username, csrf, created, last_seen)"
                 " VALUES (%s, %s, %s, %s, %s)", (key, username, csrf, now, now))
    conn.execute("DELETE FROM webmail_sessions WHERE id_hash IN (SELECT id_hash FROM webmail_sessions"
                 " ORDER BY last_seen DESC, id_hash OFFSET %s)", (maxSessions,))


def _find(conn, key, now, idle, maximum, touch):
    row = conn.execute("SELECT username, csrf, created, last_seen FROM webmail_sessions WHERE id_hash = %s",
                       (key,)).fetchone()
    if row is None:
        return None
    username, csrf, created, lastSeen = row
    if now - lastSeen > idle or now - created > maximum:
        conn.execute("DELETE FROM webmail_sessions WHERE id_hash = %s", (key,))
        return None
    if now - lastSeen >= touch:
        conn.execute("UPDATE webmail_sessions SET last_seen = %s WHERE id_hash = %s", (now, key))
    return Session(username, csrf, created, now)


def _delete(conn, key):
    return conn.execute("DELETE FROM webmail_sessions WHERE id_hash = %s RETURNING 1", (key,)).fetchone() is not None


def _sweep(conn, now, idle, maximum):
    return conn.execute("DELETE FROM webmail_sessions WHERE last_seen < %s OR created < %s",
                        (now - idle, now - maximum)).rowcount


def _count(conn):
    return conn.execute("SELECT count(*) FROM webmail_sessions").fetchone()[0]


class PostgresSessionStore:
    """
    The sessions in ``webmail_sessions`` (see the module docstring); the
    parameters are :class:`~mailnet.http.session.SessionStore`'s, plus the
    store's :class:`~mailnet.store.postgres.db.Database` and ``touch``
    (:data:`TOUCH`, never more than a tenth of ``idle``).
    """

    def __init__(self, db, clock, idle=8 * 3600, maximum=7 * 86400, maxSessions=100_000, perUser=50,
                 token=lambda: secrets.token_urlsafe(32), touch=TOUCH):
        self.db = db
        self.clock = clock
        self.idle = idle
        self.maximum = maximum
        self.maxSessions = maxSessions
        self.perUser = perUser
        self.token = token
        self.touch = min(touch, idle / 10)

    def create(self, username):
        """Deferred ``(sessionId, session)``, after the row is committed."""
        now = self.clock.seconds()
        sessionId = self.token()
        session = Session(username, self.token(), now, now)
        d = self.db.run(_create, _key(sessionId), username, session.csrf, now, self.perUser, self.maxSessions)
        return d.addCallback(lambda _: (sessionId, session))

    def find(self, sessionId):
        """Deferred: the live session with this id (its idle time restarts), or None."""
        if not sessionId:
            return defer.succeed(None)
        # Each statement on its own (no BEGIN/COMMIT round trips): a read, and now and then one write.
        return self.db.read(_find, _key(sessionId), self.clock.seconds(), self.idle, self.maximum, self.touch)

    def delete(self, sessionId):
        """Deferred bool: a session ended (logout), on every node."""
        if not sessionId:
            return defer.succeed(False)
        return self.db.run(_delete, _key(sessionId))

    def sweep(self):
        """Deferred: how many expired sessions were removed (any node may sweep)."""
        return self.db.run(_sweep, self.clock.seconds(), self.idle, self.maximum)

    def count(self):
        """Deferred: how many sessions the table holds."""
        return self.db.run(_count)

