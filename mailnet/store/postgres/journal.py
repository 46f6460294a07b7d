"""
The account change journal of the PostgreSQL store (JMAP ``/changes`` and
push; "Account state and changes" in mailnet/store/interfaces.py), in the
database: ``change_meta`` (per account: ``epoch``, ``last``, ``floor``) and
``changes`` (per account: ``seq``, type, id, kind, counts), the same rows
and the same netting as the builtin toolkit's SQLite journal
(mailnet/store/changes.py), so the answers are the same.

Email and Mailbox rows are written in the transaction that makes the
change (:func:`write`), by whichever process or node makes it: the journal
holds every writer's changes, a state never goes backwards, and it
survives a restart.  Thread rows come from the thread index (shared, in the
database: threadindex.py) and are added after the change, by the first
process that looks (:func:`writeThreads`; the marks of what the journal
took in are in ``change_meta``).
"""

from __future__ import annotations

from mailnet.store.changes import (
    CREATED,
    DESTROYED,
    EMAIL,
    MAILBOX,
    THREAD,
    TYPE_NAMES,
    UPDATED,
    Txn,
    netChanges,
    threadRows,
)
from mailnet.store.interfaces import AccountChanges, CannotCalculateChanges, TypeChanges

__all__ = ["CREATED", "UPDATED", "DESTROYED", "EMAIL", "MAILBOX", "THREAD", "write", "state", "changes"]


def row(rows, kind, type_, id_, counts=False):
    """Add one journal row (the :class:`~mailnet.store.changes.Txn` shape) to ``rows``."""
    if id_ is not None:
        rows.append((type_, id_, kind, int(bool(counts))))


def start(conn, aid):
    """A new account's journal (a fresh epoch)."""
    conn.execute("INSERT INTO change_meta (account, epoch) VALUES (%s, substr(md5(random()::text), 1, 8)) "
                 "ON CONFLICT DO NOTHING", (aid,))


def write(conn, aid, rows, keep):
    """
    Append ``rows`` to the account's journal (in the caller's transaction;
    the meta row's lock orders the account's writers).  Returns ``(state,
    types)``; history beyond ``keep`` rows is dropped.
    """
    if not rows:
        epoch, last = conn.execute("SELECT epoch, last FROM change_meta WHERE account = %s", (aid,)).fetchone()
        return f"{epoch}.{last}", set()
    epoch, last, floor = conn.execute("UPDATE change_meta SET last = last + %s WHERE account = %s "
                                      "RETURNING epoch, last, floor", (len(rows), aid)).fetchone()
    first = last - len(rows) + 1
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO changes (account, seq, type, id, kind, counts) VALUES (%s, %s, %s, %s, %s, %s)",
                        [(aid, first + n, t, i, k, bool(c)) for n, (t, i, k, c) in enumerate(rows)])
    # Other nodes hear of it at the commit (listen.py); the sender is named so it can skip its own.
    conn.execute("SELECT pg_notify('mailnet_changes', %s || ' ' || current_setting('application_name'))", (str(aid),))
    if last - floor > keep + keep // 10:
        floor = last - keep
        conn.execute("DELETE FROM changes WHERE account = %s AND seq <= %s", (aid, floor))
        conn.execute("UPDATE change_meta SET floor = %s WHERE account = %s", (floor, aid))
    return f"{epoch}.{last}", {TYPE_NAMES[r[0]] for r in rows}


def state(conn, aid):
    epoch, last = conn.execute("SELECT epoch, last FROM change_meta WHERE account = %s", (aid,)).fetchone()
    return f"{epoch}.{last}"


class _ThreadTxn(Txn):
    """The toolkit's journal transaction, for :func:`threadRows`; the marks are change_meta's."""

    def __init__(self, conn, marks, rows):
        super().__init__(conn, marks)
        self.rows = list(rows)
        self.given = len(self.rows)

    def setMeta(self, key, value):
        self.meta[key] = value


def writeThreads(conn, aid, emailRows, threads, isLive, keep):
    """
    The Thread rows (and merged Emails') for what the thread index (shared,
    threadindex.py) took in since the journal's marks, and for the Emails of
    ``emailRows`` moved or destroyed: written to the journal, the marks
    moved on.  Returns ``(state, types)``.
    """
    seq, mseq = conn.execute("SELECT thread_seq, merge_seq FROM change_meta WHERE account = %s FOR UPDATE",
                             (aid,)).fetchone()
    txn = _ThreadTxn(conn, {"threadSeq": seq, "mergeSeq": mseq}, emailRows)
    threadRows(txn, threads, lambda _, emailId: isLive(conn, emailId))
    if (txn.meta["threadSeq"], txn.meta["mergeSeq"]) != (seq, mseq):
        conn.execute("UPDATE change_meta SET thread_seq = %s, merge_seq = %s WHERE account = %s",
                     (int(txn.meta["threadSeq"]), int(txn.meta["mergeSeq"]), aid))
    return write(conn, aid, txn.rows[txn.given:], keep)


def changes(conn, aid, since, maxChanges):
    """:class:`AccountChanges` since the state ``since`` (one snapshot)."""
    if maxChanges is not None and (not isinstance(maxChanges, int) or maxChanges < 1):
        raise ValueError("maxChanges must be a positive int or None")
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    epoch, last, floor = conn.execute("SELECT epoch, last, floor FROM change_meta WHERE account = %s",
                                      (aid,)).fetchone()
    mine, _, seqText = since.rpartition(".") if isinstance(since, str) else ("", "", "")
    if mine != epoch or not (seqText.isascii() and seqText.isdigit()):
        raise CannotCalculateChanges("not a state of this account's change journal")
    seq = int(seqText)
    if seq < floor or seq > last:
        raise CannotCalculateChanges("the state is older than the changes kept" if seq < floor else "unknown state")
    parts = [_typeChanges(conn, aid, epoch, t, since, seq, last, maxChanges) for t in (EMAIL, MAILBOX, THREAD)]
    return AccountChanges(since, *parts)


def _typeChanges(conn, aid, epoch, type_, state, since, last, maxChanges):
    cur = conn.execute("SELECT seq, id, kind, counts FROM changes WHERE account = %s AND type = %s AND seq > %s "
                       "AND seq <= %s ORDER BY seq", (aid, type_, since, last))
    try:
        newSeq, more, created, updated, destroyed, props = netChanges(cur, type_, since, last, maxChanges)
    finally:
        cur.close()
    return TypeChanges(state, f"{epoch}.{newSeq}", more, created, updated, destroyed, props)
