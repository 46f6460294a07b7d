"""
The thread index of the PostgreSQL store, in the database (schema version
3): the toolkit's :class:`~mailnet.store.threads.ThreadIndex` (the same
``lookup``, ``members``, ``add`` and the same linking rules, see "Thread ids"
in mailnet/store/interfaces.py) over tables keyed by account, so that every
node gives a conversation the same thread id.  Two nodes indexing one
account at once take turns (a transaction-scoped advisory lock per
account).  :class:`~mailnet.store.threads.AccountThreads` drives it as it
drives the SQLite one.
"""

from __future__ import annotations

from mailnet.store import changes

# The advisory lock namespace of thread indexing (pg_advisory_xact_lock(key, account)).
LOCK_KEY = 7239002


class PostgresThreadIndex:
    """One account's thread index (see the module docstring)."""

    def __init__(self, db, accountId):
        self.db = db
        self.accountId = accountId
        # Bumped when ids may have changed (a merge made here): AccountThreads drops its cache.
        self.generation = 0

    def close(self):
        pass

    def lookup(self, emailIds):
        return self.db.call(_lookup, self.accountId, list(emailIds))

    def members(self, threadId):
        return self.db.call(_members, self.accountId, threadId)

    def add(self, entries):
        out, merged = self.db.call(_add, self.accountId, list(entries))
        if merged:
            self.generation += 1
        return out, merged

    def read(self, f, *args):
        """For the change journal's :func:`~mailnet.store.changes.threadRows` (its one reader)."""
        if f is not changes._threadRows:
            raise NotImplementedError("the PostgreSQL thread index answers threadRows' reads only")
        return self.db.call(_threadRows, self.accountId, *args)


def _lookup(conn, aid, emailIds):
    if not emailIds:
        return {}
    return dict(conn.execute("SELECT email, thread FROM thread_emails WHERE account = %s AND email = ANY(%s)",
                             (aid, emailIds)).fetchall())


def _members(conn, aid, threadId):
    return [r[0] for r in conn.execute("SELECT email FROM thread_emails WHERE account = %s AND thread = %s "
                                       "ORDER BY seq", (aid, threadId))]


def _add(conn, aid, entries):
    # The rules of mailnet/store/threads.py's _add, in SQL for PostgreSQL.
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_KEY, aid))
    out = {}
    merged = False
    for emailId, (mid, refs, subject, reply) in entries:
        row = conn.execute("SELECT thread FROM thread_emails WHERE account = %s AND email = %s",
                           (aid, emailId)).fetchone()
        if row is not None:
            out[emailId] = row[0]
            continue
        ids = list(refs) + ([mid] if mid else [])
        candidates = set()
        if ids:
            candidates = {r[0] for r in conn.execute(
                "SELECT thread FROM thread_emails WHERE account = %s AND subject = %s AND msgid = ANY(%s) "
                "UNION SELECT e.thread FROM thread_refs r JOIN thread_emails e "
                "ON e.account = r.account AND e.email = r.email "
                "WHERE r.account = %s AND e.subject = %s AND r.ref = ANY(%s)",
                (aid, subject, ids, aid, subject, ids))}
        if not candidates and not refs and reply and subject:
            # A reply by subject alone joins its subject's latest thread.
            row = conn.execute("SELECT thread FROM thread_emails WHERE account = %s AND subject = %s "
                               "ORDER BY seq DESC LIMIT 1", (aid, subject)).fetchone()
            if row is not None:
                candidates = {row[0]}
        if not candidates:
            thread = "T" + emailId[:254]
        elif len(candidates) == 1:
            (thread,) = candidates
        else:
            # Merge into the oldest thread (the smallest first seq).
            cs = sorted(candidates)
            firsts = dict(conn.execute("SELECT thread, MIN(seq) FROM thread_emails WHERE account = %s "
                                       "AND thread = ANY(%s) GROUP BY thread", (aid, cs)).fetchall())
            thread = min(cs, key=lambda t: (firsts.get(t, 1 << 62), t))
            others = [t for t in cs if t != thread]
            conn.execute("INSERT INTO thread_merges (account, email, absorbed, thread) SELECT account, email, "
                         "thread, %s FROM thread_emails WHERE account = %s AND thread = ANY(%s) ORDER BY seq",
                         (thread, aid, others))
            conn.execute("UPDATE thread_emails SET thread = %s WHERE account = %s AND thread = ANY(%s)",
                         (thread, aid, others))
            merged = True
        conn.execute("INSERT INTO thread_emails (account, email, thread, msgid, subject, reply) "
                     "VALUES (%s, %s, %s, %s, %s, %s)", (aid, emailId, thread, mid, subject, bool(reply)))
        if refs:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO thread_refs (account, email, ref) VALUES (%s, %s, %s)",
                                [(aid, emailId, r) for r in refs])
        out[emailId] = thread
    return out, merged


def _threadRows(conn, aid, seqMark, mergeMark):
    # mailnet/store/changes.py's _threadRows: rows indexed and merges since the marks.
    top = conn.execute("SELECT coalesce(max(seq), 0) FROM thread_emails WHERE account = %s", (aid,)).fetchone()[0]
    mtop = conn.execute("SELECT coalesce(max(seq), 0) FROM thread_merges WHERE account = %s", (aid,)).fetchone()[0]
    new = conn.execute(
        "SELECT e.email, e.thread, (SELECT MIN(f.seq) FROM thread_emails f WHERE f.account = e.account "
        "AND f.thread = e.thread), e.seq FROM thread_emails e WHERE e.account = %s AND e.seq > %s ORDER BY e.seq",
        (aid, seqMark)).fetchall()
    merges = conn.execute("SELECT email, absorbed, thread FROM thread_merges WHERE account = %s AND seq > %s "
                          "ORDER BY seq", (aid, mergeMark)).fetchall()
    return top, mtop, new, merges
