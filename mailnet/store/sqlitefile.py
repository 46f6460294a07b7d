"""The file side of the store's per-account SQLite indexes (threads, changes, list), and what they share."""

from __future__ import annotations

import os
import sqlite3

from mailnet.store.interfaces import StorageFull, TemporaryStoreError


def dropSidecars(path):
    """Remove a database's ``-wal`` and ``-shm`` files (they must not be taken for a new file's)."""
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def setAside(path):
    """A corrupt database: its sidecars removed, the file kept as ``<name>.corrupt`` for a look."""
    dropSidecars(path)
    try:
        os.replace(path, path + ".corrupt")
    except FileNotFoundError:
        pass


def createPrivate(path) -> int:
    """
    Create the database file with mode 0600 if it is missing (its rows are
    private like the messages; SQLite gives the -wal and -shm files the
    database's mode), refusing a symlink; its inode number.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def connect(path, synchronous):
    """
    A connection to the database at ``path`` (in memory when None), in
    autocommit mode, usable from any thread (the caller holds a lock); on
    a file, in WAL mode with ``PRAGMA synchronous=<synchronous>``.
    """
    db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
    if path:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=%s" % synchronous)
        except BaseException:
            db.close()
            raise
    return db


class SQLiteFile:
    """
    What the per-account SQLite indexes share (ThreadIndex, SummaryIndex,
    ChangeLog): opening under ``self.lock``, a damaged file set aside and
    made again, the errors the store reports.  A subclass has ``path``,
    ``lock`` and ``db``, and defines ``_connect`` (a new connection; raises
    ``sqlite3.DatabaseError`` for a file it cannot use) and ``_setAside``
    (report, ``_close``, :func:`setAside`).

    @cvar what: the index as error texts name it ("the thread index").
    @cvar passThrough: the ``sqlite3`` errors that are not damage: raised
        as they are, never a reason to set the file aside.
    """

    what = "the index"
    passThrough = (sqlite3.OperationalError,)

    def _open(self):
        if self.db is None:
            try:
                self.db = self._connect()
            except self.passThrough:
                raise
            except sqlite3.DatabaseError:
                self._setAside()
                self.db = self._connect()
        return self.db

    def _close(self):
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    def _guarded(self, f, *args):
        """``f(db, *args)`` under the lock; a damaged file is set aside and ``f`` tried once more."""
        with self.lock:
            try:
                try:
                    return f(self._open(), *args)
                except self.passThrough:
                    raise
                except sqlite3.DatabaseError:
                    # SQLITE_CORRUPT, SQLITE_NOTADB: the file is damaged.
                    self._setAside()
                    return f(self._open(), *args)
            except sqlite3.OperationalError as e:
                # A full disk, an I/O error, a lock: worth a retry, nothing to set aside.
                code = getattr(e, "sqlite_errorname", "") or "error"
                if code == "SQLITE_FULL":
                    raise StorageFull("%s cannot grow: the disk is full" % self.what) from None
                raise TemporaryStoreError("%s cannot be used (%s)" % (self.what, code)) from None


def openVersioned(path, synchronous, schema, version, *probes):
    """
    :func:`connect`, then ``schema`` (a script of ``CREATE ... IF NOT
    EXISTS``) applied, the ``version`` row of its ``meta (key, value)``
    table written into a new database or checked in an old one, and the
    ``probes`` (queries reading every table) run: a file of another version
    or a damaged one raises ``sqlite3.DatabaseError``; closed on failure.
    """
    db = connect(path, synchronous)
    try:
        db.executescript(schema)
        row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('version', ?)", (version,))
        elif row[0] != version:
            raise sqlite3.DatabaseError("unknown schema version")
        for probe in probes:
            db.execute(probe).fetchone()
    except BaseException:
        db.close()
        raise
    return db
