"""
JMAP uploads in PostgreSQL (schema version 10, mailnet/store/postgres/uploads.py)
against a real server: saved and read back in chunks, found by another
store object on the same database (another node), not by another account,
the same bytes twice are one row, expiry and the sweep, Blob/copy's copy,
and an outage as the store's temporary error.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import tracemalloc

import pytest

from mailnet.store.interfaces import TemporaryStoreError
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.schema import CHUNK
from mailnet.store.postgres.uploads import SPOOL, PostgresUploadStore
from mailnet.store.testing import failure, result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

ALICE, BOB = "Aalice", "Abob"


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


def makeUploads(pgServer, dbname, clock, expiry=3600):
    return PostgresUploadStore(Database(pgServer.settings(dbname), runner=syncRunner), expiry, now=clock)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def uploads(pgServer, pgDatabase, clock):
    u = makeUploads(pgServer, pgDatabase, clock)
    yield u
    u.db.close()


def count(pgServer, dbname, query):
    with pgServer.connect(dbname) as conn:
        return conn.execute(query).fetchone()[0]


def read(uploads, accountId, blobId):
    blob = result(uploads.find(accountId, blobId))
    if blob is None:
        return None
    f = result(blob.open())
    try:
        return blob, f.read()
    finally:
        f.close()


def test_saved_in_chunks_and_found_by_another_node(pgServer, pgDatabase, uploads, clock):
    data = os.urandom(2 * CHUNK + 123)
    source = io.BytesIO(b"skipped" + data)
    source.seek(7)  # from the current position, as the request body is given
    blobId, size = result(uploads.save(ALICE, source, type="image/png"))
    assert blobId == "G" + hashlib.sha256(data).hexdigest() and size == len(data)
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM upload_chunks") == 3
    other = makeUploads(pgServer, pgDatabase, clock)  # another node on the database
    try:
        blob, got = read(other, ALICE, blobId)
        assert got == data and blob.size == len(data) and blob.type == "image/png" and blob.blobId == blobId
    finally:
        other.db.close()


def test_a_large_upload_is_never_whole_in_memory(uploads):
    piece = os.urandom(CHUNK)
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as source:  # as twisted.web keeps a large request body
        for _ in range(40):  # 10 MB
            source.write(piece)
            digest.update(piece)
        source.seek(0)
        tracemalloc.start()
        try:
            blobId, size = result(uploads.save(ALICE, source))
            _, peakIn = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            blob = result(uploads.find(ALICE, blobId))
            f = result(blob.open())
            got = hashlib.sha256()
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                got.update(data)
            f.close()
            _, peakOut = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert blobId == "G" + digest.hexdigest() and size == 40 * CHUNK and got.digest() == digest.digest()
    assert peakIn < 4 * CHUNK, peakIn  # a chunk or two, not the 10 MB
    assert peakOut < SPOOL + 4 * CHUNK, peakOut


def test_another_account_cannot_read_it(uploads):
    blobId, _ = result(uploads.save(ALICE, io.BytesIO(b"alice's secret")))
    assert read(uploads, BOB, blobId) is None
    assert read(uploads, ALICE, "Gnothere") is None
    assert read(uploads, ALICE, "../" + blobId) is None


def test_the_same_bytes_twice_are_one_upload_renewed(pgServer, pgDatabase, uploads, clock):
    first, _ = result(uploads.save(ALICE, io.BytesIO(b"same")))
    clock.t += 3000
    second, _ = result(uploads.save(ALICE, io.BytesIO(b"same")))
    assert first == second
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM uploads") == 1
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM upload_chunks") == 1
    clock.t += 3000  # 6000 s after the first save, 3000 after the second
    assert read(uploads, ALICE, first)[1] == b"same"


def test_expired_uploads_are_not_found_and_swept_by_any_node(pgServer, pgDatabase, uploads, clock):
    old, _ = result(uploads.save(ALICE, io.BytesIO(b"old")))
    clock.t += 1800
    new, _ = result(uploads.save(BOB, io.BytesIO(b"new")))
    clock.t += 1801  # old: 3601 s, new: 1801 s
    assert read(uploads, ALICE, old) is None
    assert read(uploads, BOB, new)[1] == b"new"
    other = makeUploads(pgServer, pgDatabase, clock)
    try:
        assert result(other.sweep()) == 1
    finally:
        other.db.close()
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM uploads") == 1
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM upload_chunks") == 1


def test_copy_to_another_account(pgServer, pgDatabase, uploads, clock):
    data = os.urandom(CHUNK + 1)
    blobId, _ = result(uploads.save(ALICE, io.BytesIO(data)))
    assert result(uploads.copy(BOB, ALICE, blobId)) is False  # Bob has no such blob
    clock.t += 3000
    assert result(uploads.copy(ALICE, BOB, blobId)) is True
    assert result(uploads.copy(ALICE, BOB, blobId)) is True  # again: renewed, not doubled
    clock.t += 1000  # Alice's upload expired, Bob's copy lives as long as a new upload
    assert read(uploads, ALICE, blobId) is None
    assert read(uploads, BOB, blobId)[1] == data
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM uploads WHERE account = 'Abob'") == 1


def test_an_outage_is_a_temporary_error(pgServer, pgDatabase, uploads):
    blobId, _ = result(uploads.save(ALICE, io.BytesIO(b"before")))
    pgServer.stop()
    try:
        failure(uploads.save(ALICE, io.BytesIO(b"during")), TemporaryStoreError)
        failure(uploads.find(ALICE, blobId), TemporaryStoreError)
        failure(uploads.sweep(), TemporaryStoreError)
    finally:
        pgServer.start()
    assert read(uploads, ALICE, blobId)[1] == b"before"
    blobId, _ = result(uploads.save(ALICE, io.BytesIO(b"after")))
    assert read(uploads, ALICE, blobId)[1] == b"after"
