"""
The POP3 maildrop lock across nodes (RFC 1939 s8: one POP3 session per
maildrop): a session-level advisory lock, ``pg_try_advisory_lock(LOCK_KEY,
account id)``, on a connection of its own held for the POP3 session, so a
second session on any node is refused at once and a node that dies (or
loses its connection) gives the lock back with the connection.

POP3 takes it through the store contract's lock hook
(:meth:`~mailnet.store.interfaces.IMailStore.maildropLock`,
:meth:`PostgresStore.maildropLock`), after a good login.
"""

from __future__ import annotations

from mailnet.store.interfaces import TemporaryStoreError
from mailnet.store.postgres import sql
from mailnet.store.postgres.db import _psycopg, isTemporary

# The advisory lock namespace of POP3 maildrops (schema.py takes 7239001 as
# a single key, threadindex.py 7239002 with the account id).
LOCK_KEY = 7239003


class MaildropLock:
    """A held maildrop lock: its connection.  :meth:`release` (blocking) closes it."""

    def __init__(self, conn):
        self._conn = conn

    @property
    def held(self):
        return self._conn is not None and not self._conn.closed

    def release(self):
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # the session ends: PostgreSQL releases its advisory locks
            except Exception:
                pass


def tryLock(db, username, keep=None):
    """
    (Blocking, a worker thread.)  The user's maildrop lock: a
    :class:`MaildropLock`, or None when another session (on any node)
    holds it.  Raises :class:`TemporaryStoreError` when the database
    cannot be reached.
    """
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(**dict(db.settings.connectArgs(), application_name=db.applicationName + "-pop3",
                                      autocommit=True))
    except psycopg.Error as e:
        if isTemporary(e):
            raise TemporaryStoreError("the database is unavailable; try again later") from None
        raise
    try:
        with conn.transaction():
            aid = sql.accountId(conn, username, True, keep)
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_KEY, aid)).fetchone()[0]
    except BaseException as e:
        conn.close()
        if isinstance(e, psycopg.Error) and isTemporary(e):
            raise TemporaryStoreError("the database is unavailable; try again later") from None
        raise
    if not got:
        conn.close()
        return None
    return MaildropLock(conn)
