"""
The SQLite side of the message-list index (:mod:`mailnet.store.summaries`):
one row per email id and one record per folder, in a file of our own
(Maildir: ``mailnet-list.sqlite``) or in memory.  See "Message list
index" in docs/store.md.
"""

from __future__ import annotations

import os
import threading as _threading
import time

from mailnet.logs import Logger
from mailnet.store.sqlitefile import SQLiteFile, createPrivate, openVersioned, setAside

log = Logger()

SCHEMA_VERSION = "2"
FILE_NAME = "mailnet-list.sqlite"
GONE_KEEP = 24 * 3600  # seconds a gone message's row is kept (a MOVE's other half)
_CHUNK = 500  # ids per SQL IN (...)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS emails(
    email TEXT PRIMARY KEY,
    mailbox TEXT,
    uid INTEGER,
    received REAL NOT NULL,
    size INTEGER NOT NULL,
    thread TEXT,
    fields TEXT NOT NULL,
    gone REAL);
CREATE INDEX IF NOT EXISTS emails_received ON emails(received, email) WHERE mailbox IS NOT NULL;
CREATE INDEX IF NOT EXISTS emails_mailbox ON emails(mailbox, received, email);
CREATE INDEX IF NOT EXISTS emails_uid ON emails(mailbox, uid);
CREATE TABLE IF NOT EXISTS folders(
    mailbox TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    stamp TEXT,
    count INTEGER NOT NULL);
"""


def _chunks(items):
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


class SummaryIndex(SQLiteFile):
    """
    The SQLite side.  Every method may be called from any thread (one
    lock).  ``path`` None keeps the database in memory.  A database that
    cannot be opened or read is reported (no path), set aside as
    ``<name>.corrupt`` and made again, empty; one deleted while we run is
    noticed (:meth:`check`) and made again.  Either way the rows are then
    rebuilt from the folders by the next catch-up.
    """

    what = "the message list index"

    def __init__(self, path=None):
        self.path = path
        self.lock = _threading.Lock()
        self.db = None
        self.ino = None
        self.rebuilds = 0  # for tests and the bench

    def _connect(self):
        if self.path:
            # Subjects, addresses and previews are private: 0600 like the messages.
            self.ino = createPrivate(self.path)
        # WAL, no fsync per commit: kill -9 loses nothing; a power cut may
        # lose the last commits, which the next catch-up redoes.
        return openVersioned(self.path, "NORMAL", _SCHEMA, SCHEMA_VERSION,
                             "SELECT count(*) FROM folders", "SELECT email FROM emails LIMIT 1")

    def _setAside(self):
        log.warn("message list index {name} is corrupt; set aside and rebuilt", name=FILE_NAME)
        self._close()
        self.rebuilds += 1
        if not self.path:
            return
        setAside(self.path)

    def check(self):
        """(Blocking.)  A file deleted or replaced under us is opened again (empty: rebuilt)."""
        if not self.path:
            return
        with self.lock:
            if self.db is None:
                return
            try:
                ino = os.stat(self.path).st_ino
            except FileNotFoundError:
                ino = None
            if ino != self.ino:
                log.warn("message list index {name} was removed; rebuilt", name=FILE_NAME)
                self.rebuilds += 1
                self._close()

    def close(self):
        with self.lock:
            self._close()

    # Reading

    def folders(self):
        """``{mailboxId: (name, uidValidity, uidNext, modseq, stamp, count)}``."""
        return self._guarded(lambda db: {r[0]: tuple(r[1:]) for r in db.execute("SELECT * FROM folders")})

    def rows(self, emailIds):
        """``{emailId: (mailbox, uid, received, size, thread, fields)}`` (gone ones with mailbox None)."""
        def q(db):
            out = {}
            for chunk in _chunks(list(emailIds)):
                sql = ("SELECT email, mailbox, uid, received, size, thread, fields FROM emails WHERE email IN (%s)"
                       % ",".join("?" * len(chunk)))
                for r in db.execute(sql, chunk):
                    out[r[0]] = r[1:]
            return out
        return self._guarded(q)

    def uidsOf(self, mailbox):
        """``{uid: emailId}`` of a mailbox's rows."""
        return self._guarded(lambda db: dict(db.execute("SELECT uid, email FROM emails WHERE mailbox=?",
                                                         (mailbox,))))

    def page(self, mailbox, position, limit, newestFirst):
        """``(ids, total)`` in received order."""
        def q(db):
            order = "DESC" if newestFirst else "ASC"
            lim = -1 if limit is None else int(limit)
            if mailbox is None:
                where, args = "mailbox IS NOT NULL", []
                total = db.execute("SELECT sum(count) FROM folders").fetchone()[0] or 0
            else:
                where, args = "mailbox=?", [mailbox]
                row = db.execute("SELECT count FROM folders WHERE mailbox=?", args).fetchone()
                total = row[0] if row else 0
            ids = [r[0] for r in db.execute(
                "SELECT email FROM emails WHERE %s ORDER BY received %s, email %s LIMIT ? OFFSET ?"
                % (where, order, order), args + [lim, int(position)])]
            return ids, total
        return self._guarded(q)

    # Writing

    def put(self, mailbox, moves, entries, threads=None):
        """
        One transaction: ``moves`` ``[(emailId, uid, received, size)]`` (rows
        that exist: now in ``mailbox``), ``entries`` ``[(emailId, uid,
        received, size, fieldsJson)]`` (new rows), ``threads`` ``{emailId:
        threadId}``.
        """
        def w(db):
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("UPDATE emails SET mailbox=?, uid=?, received=?, size=?, gone=NULL WHERE email=?",
                               [(mailbox, uid, rec, size, e) for e, uid, rec, size in moves])
                db.executemany("INSERT OR REPLACE INTO emails(email, mailbox, uid, received, size, fields) "
                               "VALUES (?, ?, ?, ?, ?, ?)",
                               [(e, mailbox, uid, rec, size, f) for e, uid, rec, size, f in entries])
                if threads:
                    db.executemany("UPDATE emails SET thread=? WHERE email=?", [(t, e) for e, t in threads.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self._guarded(w)

    def putDelivered(self, mailbox, entries):
        """
        New rows for messages just delivered (``entries`` as in :meth:`put`),
        unless the id has a row already (a catch-up was quicker, or the
        message moved meanwhile), or the folder's record is past the UID (a
        catch-up has seen the folder since: the message was there, so it has
        a row, or was gone, so it must not get one).
        """
        def w(db):
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR IGNORE INTO emails(email, mailbox, uid, received, size, fields) "
                    "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM folders WHERE mailbox=? AND uidnext>?)",
                    [(e, mailbox, uid, rec, size, f, mailbox, uid) for e, uid, rec, size, f in entries])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self._guarded(w)

    def setThreads(self, threads):
        return self.put(None, [], [], threads)

    def finishFolder(self, mailbox, name, uidValidity, uidNext, modseq, stamp, gone):
        """
        One transaction: the rows of ``gone`` UIDs of ``mailbox`` lose their
        mailbox; the folder's record is brought up to date; rows gone for
        longer than GONE_KEEP go; other folders of ``name`` are forgotten.
        """
        def w(db):
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(sorted(gone)):
                    db.execute("UPDATE emails SET mailbox=NULL, uid=NULL, gone=? WHERE mailbox=? AND uid IN (%s)"
                               % ",".join("?" * len(chunk)), [now, mailbox, *chunk])
                db.execute("DELETE FROM emails WHERE gone < ?", (now - GONE_KEEP,))
                db.execute("DELETE FROM folders WHERE name=? AND mailbox<>?", (name, mailbox))
                # The folder's count, for listEmails' total without counting rows then.
                count = db.execute("SELECT count(*) FROM emails WHERE mailbox=?", (mailbox,)).fetchone()[0]
                db.execute("INSERT OR REPLACE INTO folders VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (mailbox, name, uidValidity, uidNext, modseq, stamp, count))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self._guarded(w)

    def dropFolders(self, mailboxes):
        """Folders that are no more (deleted): their rows lose their mailbox."""
        def w(db):
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                for m in mailboxes:
                    db.execute("UPDATE emails SET mailbox=NULL, uid=NULL, gone=? WHERE mailbox=?", (now, m))
                    db.execute("DELETE FROM folders WHERE mailbox=?", (m,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self._guarded(w)
