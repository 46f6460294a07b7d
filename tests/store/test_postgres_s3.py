"""
The PostgreSQL store with ``[postgres] bodies = "s3"``: message bodies as
objects in an S3-compatible store (moto's server mode on 127.0.0.1,
tests/store/s3_fixture.py), on a real PostgreSQL (postgres_fixture.py).

The whole store conformance suite (StoreConformance: bodies, copies,
moves, expunges, restarts) runs with bodies in S3; then what is S3's own:
content addressing (a second delivery and a COPY store no new object), no
body_chunks rows, a big body streamed both ways, the object written before
the commit (a failed PUT leaves no message), an outage as
TemporaryStoreError and recovery, and bodies stored while bodies =
"database" still read after the switch.
"""

from __future__ import annotations

import hashlib
import itertools
import tracemalloc

import pytest

from mailnet.store.conformance import StoreConformance
from mailnet.store.conformance_summaries import SummaryConformance
from mailnet.store.interfaces import INBOX, TemporaryStoreError, messageBytes
from mailnet.store.postgres import PostgresStore
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.sql import CHUNK, IN_MEMORY
from mailnet.store.testing import failure, msg, result, syncRunner
from tests.store import postgres_fixture, s3_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase
s3Server = s3_fixture.s3Server

USER = "alice@example.test"
_prefixes = itertools.count(1)
_current = {}


def s3Store(limits=None, prefix=None, objects=True):
    server, s3, name = _current["server"], _current["s3"], _current["db"]
    store = s3.objectStore(_current["prefix"] if prefix is None else prefix) if objects else None
    return PostgresStore(Database(server.settings(name), runner=syncRunner, objects=store), limits,
                         runner=syncRunner)


@pytest.fixture(autouse=True)
def _database(pgServer, pgDatabase, s3Server):
    import os

    _current.update(server=pgServer, db=pgDatabase, s3=s3Server, prefix=f"t{os.getpid()}-{next(_prefixes)}/")
    yield
    _current.clear()


class TestPostgresS3Store(StoreConformance):
    def makeStore(self, tmp_path, limits=None):
        return s3Store(limits)

    def restartStore(self, tmp_path, store):
        return s3Store()


class TestPostgresS3Summaries(SummaryConformance):
    """The message list with bodies in the object store (their list fields in the database)."""

    def makeStore(self, tmp_path):
        return s3Store()

    def restartStore(self, tmp_path, store):
        return s3Store()

    def dropListIndex(self, store, account):
        # The list fields (listindex.py): made again from the objects when listed.
        rows("DELETE FROM body_summaries RETURNING hash")
        return True


@pytest.fixture
def store():
    s = s3Store()
    yield s
    s.close()


def rows(query):
    with _current["server"].connect(_current["db"]) as conn:
        return conn.execute(query).fetchall()


def objects():
    return _current["s3"].keys(_current["prefix"])


def read(folder, uid):
    f = result(folder.openMessage(uid))
    try:
        return f.read()
    finally:
        f.close()


def test_one_object_per_distinct_body_named_by_its_sha256(store):
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder(INBOX))
    trash = result(account.openFolder("Trash"))
    uid = result(inbox.append(msg(1)))
    d = store.newDelivery()  # the same bytes again, to two mailboxes
    d.addRecipient(USER)
    d.addRecipient("bob@example.test")
    d.write(msg(1))
    result(d.commit())
    result(inbox.copyTo([uid], trash))
    result(inbox.append(msg(2)))
    assert sorted(objects()) == sorted(_current["prefix"] + hashlib.sha256(m).hexdigest() for m in (msg(1), msg(2)))
    assert rows("SELECT count(*) FROM body_chunks") == [(0,)]
    assert rows("SELECT count(*), sum(chunks) FROM bodies") == [(2, 0)]
    assert read(trash, trash.messages()[0].uid) == msg(1)
    assert read(inbox, uid) == msg(1)


def test_a_big_body_is_streamed_to_and_from_the_object_store(store):
    piece = (b"y" * 998 + b"\r\n") * 64
    pieces = (8 * 1024 * 1024) // len(piece)
    header = b"Subject: big\r\n\r\n"
    digest = hashlib.sha256(header)
    store.db.objects.client  # made once per process (boto3 loads its S3 model: a few MB, not the body)
    result(store.getAccount(USER))
    tracemalloc.start()
    try:
        d = store.newDelivery()
        d.addRecipient(USER)
        d.write(header)
        for _ in range(pieces):
            d.write(piece)
            digest.update(piece)
        [(_, _, uid)] = result(d.commit())
        _, peakIn = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        inbox = result(result(store.getAccount(USER)).openFolder(INBOX))
        f = result(inbox.openMessage(uid))
        assert messageBytes(f) is None  # a file, not the body in memory
        got = hashlib.sha256()
        while data := f.read(CHUNK):
            got.update(data)
        f.close()
        _, peakOut = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.digest() == digest.digest()
    assert objects() == [_current["prefix"] + digest.hexdigest()]
    assert peakIn < 4 * IN_MEMORY, peakIn
    assert peakOut < 4 * IN_MEMORY, peakOut


def test_an_outage_is_a_temporary_error_and_nothing_points_at_a_missing_object(store):
    s3 = _current["s3"]
    inbox = result(result(store.getAccount(USER)).openFolder(INBOX))
    uid = result(inbox.append(msg(1)))
    s3.pause()
    try:
        err = failure(inbox.append(msg(2)))
        assert isinstance(err, TemporaryStoreError), err
        assert "object store" in str(err) and "127.0.0.1" not in str(err)
        d = store.newDelivery()
        d.addRecipient(USER)
        d.write(msg(3))
        assert isinstance(failure(d.commit()), TemporaryStoreError)
        assert isinstance(failure(inbox.openMessage(uid)), TemporaryStoreError)
        # The transactions rolled back: no message refers to an object not written.
        assert rows("SELECT count(*) FROM messages") == [(1,)]
        assert rows("SELECT count(*) FROM bodies") == [(1,)]
    finally:
        s3.resume()
    assert read(inbox, uid) == msg(1)
    uid2 = result(inbox.append(msg(2)))
    assert read(inbox, uid2) == msg(2)


def test_bodies_stored_in_the_database_are_read_after_switching_to_s3():
    before = s3Store(objects=False)
    inbox = result(result(before.getAccount(USER)).openFolder(INBOX))
    uid = result(inbox.append(msg(1)))
    before.close()
    after = s3Store()
    inbox = result(result(after.getAccount(USER)).openFolder(INBOX))
    assert read(inbox, uid) == msg(1)
    uid2 = result(inbox.append(msg(2)))
    assert read(inbox, uid2) == msg(2)
    assert objects() == [_current["prefix"] + hashlib.sha256(msg(2)).hexdigest()]
    after.close()
