"""
The quota usage of the PostgreSQL store (docs/store.md "Quota"): one
``quota_usage`` row per account (schema version 4) with the bytes and the
number of its messages and the warning mark, kept by the transactions that
add or remove messages (:func:`add`, called by ``sql.insertMessages``,
``sql.deleteMessages`` and the folder delete), so no delivery sums the
account's messages.  :func:`recount` sums them once: the migration, ``mailnet
db recount``, and a counter found wrong (below zero, or missing).

Plain functions ``f(conn, ...)`` like sql.py.  No Twisted here.
"""

from __future__ import annotations

_SUM = "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages WHERE account = %s"


def lock(conn, aids):
    """
    Row locks on the accounts' counters, in account order (a delivery to
    several accounts takes them before its inserts: no two writers
    deadlock).  A missing counter is made by a recount.
    """
    aids = sorted(set(aids))
    have = {r[0] for r in conn.execute("SELECT account FROM quota_usage WHERE account = ANY(%s) "
                                       "ORDER BY account FOR UPDATE", (aids,))}
    for aid in aids:
        if aid not in have:
            recount(conn, aid)


def add(conn, aid, size, count):
    """The account's messages grew by ``count`` (negative: shrank) of ``size`` bytes in all."""
    if not count and not size:
        return
    row = conn.execute("UPDATE quota_usage SET storage = storage + %s, messages = messages + %s "
                       "WHERE account = %s RETURNING storage, messages", (size, count, aid)).fetchone()
    if row is None or row[0] < 0 or row[1] < 0:
        recount(conn, aid)  # missing or wrong: the messages' sum is the truth


def recount(conn, aid):
    """Set the counter from the messages (one sum); returns ``(storage, messages)``."""
    storage, messages = conn.execute(_SUM, (aid,)).fetchone()
    conn.execute("INSERT INTO quota_usage (account, storage, messages) VALUES (%s, %s, %s) "
                 "ON CONFLICT (account) DO UPDATE SET storage = EXCLUDED.storage, messages = EXCLUDED.messages",
                 (aid, storage, messages))
    return int(storage), int(messages)


def usage(conn, aid):
    """``(storage, messages)`` of an account (a missing counter is recounted)."""
    row = conn.execute("SELECT storage, messages FROM quota_usage WHERE account = %s", (aid,)).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else recount(conn, aid)


def usageOf(conn, username):
    """``(storage, messages)`` of a user; ``(0, 0)`` when the account does not exist yet."""
    row = conn.execute("SELECT a.id, q.storage, q.messages FROM accounts a "
                       "LEFT JOIN quota_usage q ON q.account = a.id WHERE a.username = %s", (username,)).fetchone()
    if row is None:
        return 0, 0
    if row[1] is None:
        return recount(conn, row[0])
    return int(row[1]), int(row[2])


def claimWarning(conn, aid, warned):
    """
    ``warned``: the usage is at or past the threshold.  True when the mark
    was set now (a warning is due, once across every node); the mark is
    cleared when the usage is below the threshold.
    """
    if not warned:
        conn.execute("UPDATE quota_usage SET warned = false WHERE account = %s AND warned", (aid,))
        return False
    lock(conn, [aid])
    return conn.execute("UPDATE quota_usage SET warned = true WHERE account = %s AND NOT warned RETURNING 1",
                        (aid,)).fetchone() is not None


def recountAll(conn, username=None):
    """``mailnet db recount``: every account's counter (or one user's) from its messages; returns how many."""
    if username is None:
        aids = [r[0] for r in conn.execute("SELECT id FROM accounts ORDER BY id")]
    else:
        aids = [r[0] for r in conn.execute("SELECT id FROM accounts WHERE username = %s", (username,))]
    lock(conn, aids)  # writers wait while the sums are taken
    for aid in aids:
        recount(conn, aid)
    return len(aids)
