"""
Blob/copy of a PostgreSQL upload racing a second save of the same bytes
to the source account (mailnet/store/postgres/uploads.py), on a real
server.  The save replaces the source row (a new id, new chunk rows); a
copy that found the old row before that save committed, and copied its
chunk rows after, made a row in the target account whose chunks are
missing: the copied blob could never be read.  The copy now holds the
source's lock before it looks, so it waits for the save and copies the
new row.  Likewise a blob found, then uploaded again to the account,
then opened: the open read the replaced row's chunks (LookupError);
it now reads the account's current row of that blob id (the same bytes).
"""

from __future__ import annotations

import io
import threading
import time

from mailnet.store.postgres import uploads as uploadsModule
from mailnet.store.postgres.schema import CHUNK
from mailnet.store.testing import result
from tests.store import postgres_fixture
from tests.store import test_postgres_uploads as base

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase
clock = base.clock
uploads = base.uploads
ALICE, BOB, read = base.ALICE, base.BOB, base.read


class _AfterFind:
    """A connection that, right after the copy's look-up of the source row, waits for ``go``."""

    def __init__(self, conn, found, go):
        self._conn, self._found, self._go = conn, found, go

    def execute(self, query, *args, **kw):
        out = self._conn.execute(query, *args, **kw)
        if query.startswith("SELECT id, size, type, chunks FROM uploads"):
            self._found.set()
            assert self._go.wait(30)
        return out


def _waitingForALock(pgServer, dbname, pid):
    with pgServer.connect(dbname) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", (pid,)).fetchone()[0] > 0


def test_a_copy_racing_a_new_save_of_the_same_bytes_copies_every_chunk(pgServer, pgDatabase, uploads, clock):
    data = bytes(range(256)) * (2 * CHUNK // 256 + 10)  # three chunks
    blobId, _ = result(uploads.save(ALICE, io.BytesIO(data)))
    now = clock()

    # Another node saves the same bytes to Alice again: its transaction has
    # replaced the row (not committed yet) and holds the row's lock.
    saver = pgServer.connect(pgDatabase)
    saver.autocommit = False
    uploadsModule._save(saver, ALICE, io.BytesIO(data), 0, "application/octet-stream", now)

    copier = pgServer.connect(pgDatabase)
    pid = copier.info.backend_pid
    found, go = threading.Event(), threading.Event()
    outcome = []

    def copy():
        try:
            with copier.transaction():
                outcome.append(uploadsModule._copy(_AfterFind(copier, found, go), ALICE, BOB, blobId,
                                                   now - uploads.expiry, now))
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome.append(e)

    thread = threading.Thread(target=copy)
    thread.start()
    try:
        # Either the copy has looked (and now waits for go) or it waits for the save's lock.
        deadline = time.monotonic() + 30
        while not found.is_set() and not _waitingForALock(pgServer, pgDatabase, pid):
            assert time.monotonic() < deadline, "the copy neither looked nor waited"
            time.sleep(0.02)
        saver.commit()
        go.set()
        thread.join(30)
    finally:
        go.set()
        saver.close()
    copier.close()
    assert outcome == [True]
    got = read(uploads, BOB, blobId)
    assert got is not None and got[1] == data


def test_a_blob_found_then_uploaded_again_still_opens(uploads):
    # Found (a download, an Email/set that uses the blob), then the same
    # bytes uploaded again to the account before it is opened: the save
    # replaced the row the Blob was found with.  Open reads the current row
    # (the same bytes: the same blob id), not "removed while it was read".
    data = bytes(range(256)) * (2 * CHUNK // 256 + 10)
    blobId, _ = result(uploads.save(ALICE, io.BytesIO(data)))
    blob = result(uploads.find(ALICE, blobId))
    result(uploads.save(ALICE, io.BytesIO(data)))
    f = result(blob.open())
    try:
        assert f.read() == data
    finally:
        f.close()

