"""
Account state and changes (JMAP RFC 8620 s5.2 ``Foo/changes`` and s7
push; RFC 8621 Mailbox, Email and Thread changes): the change journal the
builtin backends share.  See "Account state and changes" in
docs/store.md; in short:

* One SQLite database per account (memory backend: in memory; Maildir:
  ``<account>/mailnet-changes.sqlite``, beside Dovecot's files).  Its
  ``log`` table has one row per change of one object: ``seq`` (the
  account's modification counter: every row gets the next number),
  the type (Email, Mailbox, Thread), the id, and the kind (created,
  updated, destroyed; a Mailbox row also says whether only its counts
  changed).  The account's state is ``<epoch>.<seq>`` (the epoch is
  random, new whenever the journal is made anew, so states of a lost
  journal are recognised and refused).
* :meth:`ChangeLog.changes` nets each object's rows after the asked
  state: created then destroyed is left out, destroyed then created is
  updated; ``maxChanges`` stops before the first row of one id too many,
  and the seq of the last row read is the intermediate state.
* History is bounded (``[store] changes_kept`` rows): older rows are
  dropped and states before them answer :class:`CannotCalculateChanges`.
* Thread rows come from the thread index (:mod:`mailnet.store.threads`)
  once it knows a message's thread: rows indexed since the last look
  (a new thread is created, a joined one updated), merges (the absorbed
  thread destroyed, its messages' Emails updated), and the threads of
  moved or destroyed messages (updated, or destroyed with their last
  live message).  Thread ids are worked out lazily, so a delivered
  message's thread shows up in the changes once its thread id has been
  asked for (JMAP Email/get, IMAP FETCH THREADID).
* ``synchronous=FULL``: a transaction is on disk before its state is
  handed out, so a state never goes backwards, even after a power cut.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading

from twisted.logger import Logger

from mailnet.store.interfaces import (
    COUNT_PROPERTIES,
    AccountChanges,
    CannotCalculateChanges,
    TypeChanges,
)
from mailnet.store.sqlitefile import SQLiteFile, connect, createPrivate, dropSidecars, setAside

log = Logger()

FILE_NAME = "mailnet-changes.sqlite"
SCHEMA_VERSION = "1"
EMAIL, MAILBOX, THREAD = 0, 1, 2
TYPE_NAMES = ("Email", "Mailbox", "Thread")
CREATED, UPDATED, DESTROYED = 0, 1, 2
DEFAULT_KEEP = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log(
    seq INTEGER PRIMARY KEY, type INTEGER NOT NULL, id TEXT NOT NULL,
    kind INTEGER NOT NULL, counts INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS log_type ON log(type, seq);
CREATE TABLE IF NOT EXISTS live(
    mailbox TEXT NOT NULL, uid INTEGER NOT NULL, email TEXT NOT NULL,
    modseq INTEGER NOT NULL, seen INTEGER NOT NULL, PRIMARY KEY(mailbox, uid));
CREATE INDEX IF NOT EXISTS live_email ON live(email);
CREATE TABLE IF NOT EXISTS folders(dir TEXT PRIMARY KEY, mailbox TEXT NOT NULL, state TEXT NOT NULL);
"""


def _newEpoch():
    return secrets.token_hex(4)


class Txn:
    """One transaction of the journal: the rows to add, and the db for reading."""

    def __init__(self, db, meta):
        self.db = db
        self.meta = meta
        self.rows = []  # (type, id, kind, counts)
        self.metaChanged = {}

    def emit(self, kind, type_, id_, counts=False):
        self.rows.append((type_, id_, kind, int(bool(counts))))

    def setMeta(self, key, value):
        self.meta[key] = value
        self.metaChanged[key] = str(value)


class ChangeLog(SQLiteFile):
    """
    The journal of one account.  Every method may be called from any
    thread (one lock).  ``path`` None keeps it in memory.  A database that
    cannot be read (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``, an unknown
    schema) is reported (no path), set aside as ``<name>.corrupt`` and
    made again with a new epoch; one that was deleted is made again the
    same way.  ``rebuilt`` counts how often that happened (the backend
    then takes its baseline again).
    """

    what = "the change journal"
    passThrough = (sqlite3.OperationalError, sqlite3.IntegrityError)

    def __init__(self, path=None, keep=DEFAULT_KEEP):
        self.path = path
        self.keep = max(1, int(keep))
        self.lock = threading.RLock()
        self.db = None
        self.ino = None
        self.meta = {}
        self.rebuilt = 0

    # Opening

    def _open(self):
        if self.db is not None and self.path:
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                ino = None
            if ino != self.ino:
                log.warn("change journal {name} was removed or replaced; made again (old states: cannot "
                         "calculate changes)", name=FILE_NAME)
                self._close()
                if ino is None:
                    dropSidecars(self.path)
        return SQLiteFile._open(self)

    def _connect(self):
        if self.path:
            self.ino = createPrivate(self.path)
        # FULL: a state is on disk before anyone is told of it.
        db = connect(self.path, "FULL")
        try:
            db.executescript(_SCHEMA)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                meta = {"version": SCHEMA_VERSION, "epoch": _newEpoch(), "last": "0", "floor": "0"}
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
                db.execute("COMMIT")
                self.rebuilt += 1
            elif meta.get("version") != SCHEMA_VERSION or "epoch" not in meta:
                raise sqlite3.DatabaseError("unknown schema version")
            int(meta["last"]), int(meta["floor"])
            db.execute("SELECT count(*) FROM log WHERE seq < 0").fetchone()
        except (ValueError, KeyError):
            db.close()
            raise sqlite3.DatabaseError("bad meta") from None
        except BaseException:
            db.close()
            raise
        self.meta = meta
        return db

    def _setAside(self):
        log.warn("change journal {name} is corrupt; set aside and made again (old states: cannot "
                 "calculate changes)", name=FILE_NAME)
        self._close()
        if not self.path:
            return
        setAside(self.path)

    def close(self):
        with self.lock:
            self._close()

    # Reading

    def _fresh(self, db):
        """The meta table as it is now (another process may have written)."""
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if "epoch" not in meta or "last" not in meta or "floor" not in meta:
            raise sqlite3.DatabaseError("meta table damaged")
        self.meta = meta
        return meta

    def state(self):
        """The current state string."""
        return self._guarded(lambda db: self._stateOf(int(self._fresh(db)["last"])))

    def _stateOf(self, seq):
        return f"{self.meta['epoch']}.{seq}"

    def read(self, f, *args):
        """``f(db, meta, *args)`` under the lock (a backend's own tables)."""
        return self._guarded(lambda db: f(db, self._fresh(db), *args))

    def changes(self, state, maxChanges=None):
        """:class:`AccountChanges` since ``state`` (see the module docstring)."""
        if maxChanges is not None and (not isinstance(maxChanges, int) or maxChanges < 1):
            raise ValueError("maxChanges must be a positive int or None")
        return self._guarded(self._changes, state, maxChanges)

    def _changes(self, db, state, maxChanges):
        db.execute("BEGIN")  # one snapshot for the meta and the rows
        try:
            return self._changesIn(db, state, maxChanges)
        finally:
            db.execute("COMMIT")

    def _changesIn(self, db, state, maxChanges):
        meta = self._fresh(db)
        last, floor = int(meta["last"]), int(meta["floor"])
        epoch, _, seqText = state.rpartition(".") if isinstance(state, str) else ("", "", "")
        if epoch != meta["epoch"] or not (seqText.isascii() and seqText.isdigit()):
            raise CannotCalculateChanges("not a state of this account's change journal")
        since = int(seqText)
        if since < floor or since > last:
            raise CannotCalculateChanges("the state is older than the changes kept" if since < floor
                                         else "unknown state")
        parts = [self._typeChanges(db, t, state, since, last, maxChanges) for t in (EMAIL, MAILBOX, THREAD)]
        return AccountChanges(state, *parts)

    def _typeChanges(self, db, type_, state, since, last, maxChanges):
        cur = db.execute("SELECT seq, id, kind, counts FROM log WHERE type=? AND seq>? ORDER BY seq", (type_, since))
        try:
            newSeq, more, created, updated, destroyed, props = netChanges(cur, type_, since, last, maxChanges)
        finally:
            cur.close()
        return TypeChanges(state, self._stateOf(newSeq), more, created, updated, destroyed, props)

    # Writing

    def record(self, build, threads=None, isLive=None):
        """
        One transaction: ``build(txn)`` adds rows (:meth:`Txn.emit`) and
        may change the backend's own tables, then the thread rows are
        added (see :func:`threadRows`; ``threads`` is a
        :class:`~mailnet.store.threads.ThreadIndex` or None, ``isLive(db,
        emailId)`` tells whether the account still has a message).
        Returns ``(state, types)``: the new state, and the set of type
        names that changed (empty: nothing did).
        """
        return self._guarded(self._record, build, threads, isLive)

    def _record(self, db, build, threads, isLive):
        db.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(self._fresh(db))
            txn = Txn(db, meta)
            build(txn)
            if threads is not None:
                threadRows(txn, threads, isLive)
            last = int(meta["last"])
            rows = [(last + n + 1, *row) for n, row in enumerate(txn.rows)]
            if rows:
                db.executemany("INSERT INTO log(seq, type, id, kind, counts) VALUES (?, ?, ?, ?, ?)", rows)
                last += len(rows)
                txn.setMeta("last", last)
                floor = int(meta["floor"])
                if last - floor > self.keep + self.keep // 10:
                    floor = last - self.keep
                    db.execute("DELETE FROM log WHERE seq <= ?", (floor,))
                    txn.setMeta("floor", floor)
            if txn.metaChanged:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(txn.metaChanged.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.meta = meta
        return self._stateOf(int(meta["last"])), {TYPE_NAMES[r[0]] for r in txn.rows}


def threadRows(txn, threads, isLive):
    """
    Add the Thread (and merged Emails') rows: thread-index rows added since
    the marks kept in the journal's meta, merges, and the threads of the
    Emails this transaction moved or destroyed.
    """
    meta = txn.meta
    seqMark, mergeMark = int(meta.get("threadSeq", 0)), int(meta.get("mergeSeq", 0))
    top, mtop, new, merges = threads.read(_threadRows, seqMark, mergeMark)
    touched = {}
    for email, thread, firstSeq, seq in new:
        if thread not in touched:
            touched[thread] = CREATED if firstSeq > seqMark and firstSeq == seq else UPDATED
    for email, absorbed, thread in merges:
        if isLive(txn.db, email):
            txn.emit(UPDATED, EMAIL, email)
        touched[absorbed] = DESTROYED
        if touched.get(thread) != CREATED:
            touched[thread] = UPDATED
    # Emails moved (their mailbox changed) or destroyed here: their threads.
    moved = {r[1] for r in txn.rows if r[0] == EMAIL and r[2] == UPDATED and r[3]}
    gone = {r[1] for r in txn.rows if r[0] == EMAIL and r[2] == DESTROYED}
    if moved or gone:
        known = threads.lookup(moved | gone)
        for email, thread in known.items():
            if email in gone and touched.get(thread) is None:
                members = threads.members(thread)
                alive = any(m not in gone and isLive(txn.db, m) for m in members)
                touched[thread] = UPDATED if alive else DESTROYED
            else:
                touched.setdefault(thread, UPDATED)
    for thread, kind in touched.items():
        txn.emit(kind, THREAD, thread)
    if top != seqMark:
        txn.setMeta("threadSeq", top)
    if mtop != mergeMark:
        txn.setMeta("mergeSeq", mtop)


def _threadRows(db, seqMark, mergeMark):
    top = db.execute("SELECT max(seq) FROM emails").fetchone()[0] or 0
    mtop = db.execute("SELECT max(seq) FROM merges").fetchone()[0] or 0
    if top < seqMark:
        seqMark = 0  # the thread index was made anew
    if mtop < mergeMark:
        mergeMark = 0
    new = db.execute(
        "SELECT e.email, e.thread, (SELECT MIN(f.seq) FROM emails f WHERE f.thread=e.thread), e.seq "
        "FROM emails e WHERE e.seq > ? ORDER BY e.seq", (seqMark,)).fetchall()
    merges = db.execute("SELECT email, absorbed, thread FROM merges WHERE seq > ? ORDER BY seq",
                        (mergeMark,)).fetchall()
    return top, mtop, new, merges


class Listeners:
    """The :class:`~mailnet.store.interfaces.IAccountListener` s of one account."""

    def __init__(self):
        self.items = []

    def __bool__(self):
        return bool(self.items)

    def add(self, listener):
        if listener not in self.items:
            self.items.append(listener)

    def remove(self, listener):
        if listener in self.items:
            self.items.remove(listener)

    def tell(self, account, state, types, own=None):
        """
        ``types`` changed, of which ``own`` (default: all) by this process's
        own writes: every listener's ``accountChanged``, then the optional
        ``ownChange`` of those that have it (IAccountListener).
        """
        if not types:
            return
        types = frozenset(types)
        own = types if own is None else frozenset(own)
        for listener in list(self.items):
            try:
                listener.accountChanged(account, state, types)
                ownChange = getattr(listener, "ownChange", None)
                if own and ownChange is not None:
                    ownChange(account, state, own)
            except Exception:
                log.failure("account listener failed")


def dumps(value):
    """A backend's per-folder position, for the ``folders`` table."""
    return json.dumps(value, separators=(",", ":"))


def loads(text):
    return json.loads(text)


def netChanges(rows, type_, since, last, maxChanges):
    """
    The net effect of a type's journal rows ``(seq, id, kind, counts)`` in
    seq order after ``since`` (RFC 8620 s5.2): an id created and destroyed
    in between is left out, created-then-updated is created, and so on; at
    most ``maxChanges`` ids, stopping before the first row of one more.
    Returns ``(newSeq, hasMore, created, updated, destroyed, properties)``,
    ``properties`` being the count properties when every updated Mailbox
    changed only its counts.  Shared by every backend that keeps a journal.
    """
    first, lastKind, countsOnly = {}, {}, {}
    newSeq, more, prev = last, False, since
    for seq, id_, kind, counts in rows:
        if id_ not in first:
            if maxChanges is not None and len(first) >= maxChanges:
                newSeq, more = prev, True
                break
            first[id_] = kind
            countsOnly[id_] = True
        lastKind[id_] = kind
        if kind != UPDATED or not counts:
            countsOnly[id_] = False
        prev = seq
    created, updated, destroyed = [], [], []
    for id_, k in first.items():
        before = k != CREATED
        after = lastKind[id_] != DESTROYED
        if before and after:
            updated.append(id_)
        elif after:
            created.append(id_)
        elif before:
            destroyed.append(id_)
    props = None
    if type_ == MAILBOX and updated and all(countsOnly[i] for i in updated):
        props = list(COUNT_PROPERTIES)
    return newSeq, more, sorted(created), sorted(updated), sorted(destroyed), props
