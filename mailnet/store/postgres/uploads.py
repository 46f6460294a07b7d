"""
JMAP uploads (RFC 8620 s6.1) in PostgreSQL (schema version 10), so that a
blob uploaded through one node is found by an Email/set or Email/import
that reaches another (docs/scaling.md).  The same interface as the
per-node :class:`mailnet.http.blobstore.UploadStore` (``save``, ``find``,
``copy``, ``sweep``); the wiring (mailnet/service.py) chooses it when
``[store] backend = "postgres"``.

* ``uploads``: one row per ``(account, blob_id)``: size, media type,
  ``created`` (epoch seconds of the node that wrote it), number of chunks.
* ``upload_chunks``: the bytes in chunks of :data:`CHUNK` bytes.  A save
  reads the request body a chunk at a time and inserts each; a read fills
  a spooled temporary file a chunk at a time (in memory up to
  :data:`SPOOL` bytes, then on disk), so no whole large upload is ever in
  memory.

Blob ids are ``G`` + the SHA-256 of the bytes, as in the file store (the
same bytes uploaded twice to one account are one row, its ``created``
renewed).  A save is one transaction; the caller (the upload's 201) hears
of it only after the commit.  An upload expires ``[http] blob_expiry``
seconds after its last save or copy: it is then not found, and the sweep
of any node deletes it.  A database outage is the store's
:class:`~mailnet.store.interfaces.TemporaryStoreError` (db.py): the upload
answers 503, a method using the blob serverFail.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time

from zope.interface import implementer

from mailnet.jmap.blobs import Blob, IBlobSource
from mailnet.jmap.core import isId
from mailnet.logs import Logger
from mailnet.store.postgres.schema import CHUNK

log = Logger()

# A blob read for a client is kept in memory up to this size, then in a temporary file.
SPOOL = 1024 * 1024


def _lock(conn, accountId, blobId):
    # Two saves of the same bytes to one account at once: the second waits for the first's commit.
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 10))", (accountId + "/" + blobId,))


def _save(conn, accountId, source, start, type, now):
    source.seek(start)  # a retried transaction reads the body again
    placeholder = "tmp-" + secrets.token_hex(8)
    upload = conn.execute(
        "INSERT INTO uploads (account, blob_id, type, created) VALUES (%s, %s, %s, %s) RETURNING id",
        (accountId, placeholder, type, now)).fetchone()[0]
    digest = hashlib.sha256()
    size = n = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        conn.execute("INSERT INTO upload_chunks (upload, n, data) VALUES (%s, %s, %s)", (upload, n, chunk))
        n += 1
    blobId = "G" + digest.hexdigest()
    _lock(conn, accountId, blobId)
    # The same bytes uploaded before: the new row replaces the old (a new expiry, the latest type).
    conn.execute("DELETE FROM uploads WHERE account = %s AND blob_id = %s", (accountId, blobId))
    conn.execute("UPDATE uploads SET blob_id = %s, size = %s, chunks = %s WHERE id = %s",
                 (blobId, size, n, upload))
    return blobId, size


def _find(conn, accountId, blobId, oldest):
    return conn.execute(
        "SELECT id, size, type, chunks FROM uploads WHERE account = %s AND blob_id = %s AND created >= %s",
        (accountId, blobId, oldest)).fetchone()


def _read(conn, upload, chunks, accountId=None, blobId=None):
    """
    The upload's bytes, a chunk per query, into a spooled file.  A save of
    the same bytes to the account since it was found replaced its row (a
    new id): then the current row of ``(accountId, blobId)`` is read
    instead (the same bytes), once.  LookupError when it is gone (swept).
    """
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL)
    try:
        for attempt in range(2):
            out.seek(0)
            out.truncate()
            for n in range(chunks):
                row = conn.execute("SELECT data FROM upload_chunks WHERE upload = %s AND n = %s",
                                   (upload, n)).fetchone()
                if row is None:
                    break
                out.write(row[0])
            else:
                out.seek(0)
                return out
            current = None if accountId is None or attempt else conn.execute(
                "SELECT id, chunks FROM uploads WHERE account = %s AND blob_id = %s",
                (accountId, blobId)).fetchone()
            if current is None:
                break
            upload, chunks = current
        raise LookupError("the upload was removed while it was read")
    except BaseException:
        out.close()
        raise


def _copy(conn, fromAccountId, toAccountId, blobId, oldest, now):
    # Both locks (in one order: two opposite copies cannot deadlock) before
    # looking: a save of the same bytes to the source replaces its row and
    # chunk rows, and a copy that found the old row before that commit
    # would copy no chunks.
    for account in sorted({fromAccountId, toAccountId}):
        _lock(conn, account, blobId)
    found = _find(conn, fromAccountId, blobId, oldest)
    if found is None:
        return False
    upload, size, type, chunks = found
    touched = conn.execute("UPDATE uploads SET created = %s WHERE account = %s AND blob_id = %s RETURNING id",
                           (now, toAccountId, blobId)).fetchone()
    if touched is not None:
        return True
    new = conn.execute(
        "INSERT INTO uploads (account, blob_id, size, type, created, chunks) VALUES (%s, %s, %s, %s, %s, %s)"
        " RETURNING id", (toAccountId, blobId, size, type, now, chunks)).fetchone()[0]
    # Copied by the server, chunk rows to chunk rows: nothing passes through this process.
    conn.execute("INSERT INTO upload_chunks (upload, n, data) SELECT %s, n, data FROM upload_chunks"
                 " WHERE upload = %s", (new, upload))
    return True


def _sweep(conn, oldest):
    return conn.execute("DELETE FROM uploads WHERE created < %s", (oldest,)).rowcount


@implementer(IBlobSource)
class PostgresUploadStore:
    """
    @param db: the store's :class:`~mailnet.store.postgres.db.Database`.
    @param expiry: seconds an upload is kept (``[http] blob_expiry``).
    """

    def __init__(self, db, expiry, now=time.time):
        self.db = db
        self.expiry = expiry
        self.now = now

    def save(self, accountId, source, type="application/octet-stream"):
        """
        Copy the readable binary file ``source`` (from its current position)
        into the account's uploads, committed.  Deferred firing with
        ``(blobId, size)``.
        """
        if not isId(accountId):
            raise ValueError("bad account id")
        return self.db.run(_save, accountId, source, source.tell(), type, self.now())

    def find(self, accountId, blobId):
        if not (isId(accountId) and isId(blobId) and blobId.startswith("G")):
            return None
        d = self.db.read(_find, accountId, blobId, self.now() - self.expiry)
        return d.addCallback(self._blob, accountId, blobId)

    def _blob(self, row, accountId, blobId):
        if row is None:
            return None
        upload, size, type, chunks = row
        return Blob(blobId, size, type, lambda: self.db.read(_read, upload, chunks, accountId, blobId))

    def copy(self, fromAccountId, toAccountId, blobId):
        if not (isId(fromAccountId) and isId(toAccountId) and isId(blobId) and blobId.startswith("G")):
            return False
        now = self.now()
        return self.db.run(_copy, fromAccountId, toAccountId, blobId, now - self.expiry, now)

    def sweep(self):
        """Delete the expired uploads (Deferred: how many)."""
        d = self.db.run(_sweep, self.now() - self.expiry)

        def done(removed):
            if removed:
                log.info("jmap: removed {count} expired uploads", count=removed)
            return removed
        return d.addCallback(done)
