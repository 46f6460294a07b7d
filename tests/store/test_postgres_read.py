"""
Fast body reads on the PostgreSQL store (mailnet/store/postgres/reader.py):
a batch read gives each message its own bytes in one query, a second open
is served from the cache without a query, bodies over 1 MiB are still
streamed and never cached, the cache stays within its bytes, a failed
batch falls back to single reads, and with the cache off every open is
a query again.  Also the cheap refresh: one statement when nothing changed.
"""

from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest
from twisted.internet import defer

from mailnet.store.interfaces import INBOX, NoSuchMessage, TemporaryStoreError, messageBytes
from mailnet.store.postgres import PostgresStore, sql
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.reader import BodyCache
from mailnet.store.postgres.sql import IN_MEMORY
from mailnet.store.testing import failure, msg, result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

USER = "alice@example.test"


class Counting:
    """A synchronous runner that counts the worker round trips (the database calls)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, f, *args, **kw):
        self.calls += 1
        return syncRunner(f, *args, **kw)


class Manual:
    """A runner whose calls run when the test says (opens can wait for a batch on its way)."""

    def __init__(self):
        self.queue = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.queue.append((f, args, d))
        return d

    def runAll(self):
        while self.queue:
            f, args, d = self.queue.pop(0)
            defer.maybeDeferred(f, *args).chainDeferred(d)


def makeStore(pgServer, dbname, runner=syncRunner, **kw):
    return PostgresStore(Database(pgServer.settings(dbname), runner=runner), runner=syncRunner, **kw)


def filled(pgServer, dbname, datas):
    """Append ``datas`` with one store, then a fresh store (empty cache) on the same database."""
    writer = makeStore(pgServer, dbname)
    inbox = result(result(writer.getAccount(USER)).openFolder(INBOX))
    uids = [result(inbox.append(d)) for d in datas]
    inbox.close()
    writer.close()
    return uids


def openInbox(store):
    return result(result(store.getAccount(USER)).openFolder(INBOX))


def read(folder, uid):
    f = result(folder.openMessage(uid))
    try:
        return f.read()
    finally:
        f.close()


def distinct(n):
    return [msg(i, b"text %d\r\n" % i * (50 + i)) for i in range(n)]


def test_a_batch_reads_many_bodies_in_one_query_and_each_message_gets_its_own(pgServer, pgDatabase):
    datas = distinct(40)
    datas[7] = datas[3]  # the same bytes twice (one body row)
    uids = filled(pgServer, pgDatabase, datas)
    count = Counting()
    store = makeStore(pgServer, pgDatabase, runner=count)
    inbox = openInbox(store)
    before = count.calls
    inbox.prefetch(list(reversed(uids)))
    assert count.calls == before + 1
    got = [read(inbox, uid) for uid in uids]
    assert got == datas
    assert count.calls == before + 1  # every open came from the batch
    store.close()


def test_batches_are_read_ahead_long_at_most(pgServer, pgDatabase):
    uids = filled(pgServer, pgDatabase, distinct(20))
    count = Counting()
    store = makeStore(pgServer, pgDatabase, runner=count, readAhead=8)
    inbox = openInbox(store)
    before = count.calls
    inbox.prefetch(uids)
    assert count.calls == before + 3  # 8 + 8 + 4
    store.close()


def test_a_second_open_needs_no_query(pgServer, pgDatabase):
    datas = distinct(3)
    uids = filled(pgServer, pgDatabase, datas)
    count = Counting()
    store = makeStore(pgServer, pgDatabase, runner=count)
    inbox = openInbox(store)
    assert read(inbox, uids[1]) == datas[1]
    before = count.calls
    assert read(inbox, uids[1]) == datas[1]
    assert count.calls == before
    # Another folder handle on the same store shares the cache.
    other = openInbox(store)
    before = count.calls
    assert read(other, uids[1]) == datas[1]
    assert count.calls == before
    store.close()


def test_opens_wait_for_a_batch_on_its_way(pgServer, pgDatabase):
    datas = distinct(10)
    uids = filled(pgServer, pgDatabase, datas)
    runner = Manual()
    store = makeStore(pgServer, pgDatabase, runner=runner)
    account = store.getAccount(USER)
    runner.runAll()
    folder = result(account).openFolder(INBOX)
    runner.runAll()
    inbox = result(folder)
    inbox.prefetch(uids)
    opens = [inbox.openMessage(uid) for uid in uids]
    assert len(runner.queue) == 1  # the batch; the opens wait for it
    runner.runAll()
    assert [result(d).read() for d in opens] == datas
    store.close()


def test_a_failed_batch_falls_back_to_single_reads(pgServer, pgDatabase, monkeypatch):
    datas = distinct(5)
    uids = filled(pgServer, pgDatabase, datas)
    runner = Manual()
    store = makeStore(pgServer, pgDatabase, runner=runner)
    account = store.getAccount(USER)
    runner.runAll()
    folder = result(account).openFolder(INBOX)
    runner.runAll()
    inbox = result(folder)

    def down(conn, *args):
        raise TemporaryStoreError("the database is unavailable; try again later")

    monkeypatch.setattr(sql, "readBodies", down)
    inbox.prefetch(uids)
    opens = [inbox.openMessage(uid) for uid in uids]
    runner.runAll()
    assert [result(d).read() for d in opens] == datas
    store.close()


def test_a_message_expunged_before_its_batch_is_no_such_message(pgServer, pgDatabase):
    datas = distinct(4)
    uids = filled(pgServer, pgDatabase, datas)
    store = makeStore(pgServer, pgDatabase)
    inbox = openInbox(store)
    # Another node expunges it; this node's snapshot still lists it.
    other = makeStore(pgServer, pgDatabase)
    otherInbox = openInbox(other)
    result(otherInbox.expunge([uids[2]]))
    other.close()
    inbox.prefetch(uids)
    failure(inbox.openMessage(uids[2]), NoSuchMessage)
    assert read(inbox, uids[3]) == datas[3]
    store.close()


def test_a_large_body_is_streamed_not_batched_nor_cached(pgServer, pgDatabase):
    big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * (3 * 1024)  # about 3 MiB
    small = distinct(3)
    uids = filled(pgServer, pgDatabase, [small[0], big, small[1], small[2]])
    count = Counting()
    store = makeStore(pgServer, pgDatabase, runner=count)
    inbox = openInbox(store)
    tracemalloc.start()
    try:
        inbox.prefetch(uids)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert store.bodies.size < IN_MEMORY  # the big one was not read ahead
        f = result(inbox.openMessage(uids[1]))
        assert messageBytes(f) is None and not isinstance(f, io.BytesIO)  # a file
        digest = hashlib.sha256()
        while True:
            piece = f.read(64 * 1024)
            if not piece:
                break
            digest.update(piece)
        f.close()
        _, peakOpen = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.digest() == hashlib.sha256(big).digest()
    assert peak < IN_MEMORY and peakOpen < 2 * IN_MEMORY
    assert store.bodies.size < IN_MEMORY  # not cached after its open either
    before = count.calls
    result(inbox.openMessage(uids[1])).close()
    assert count.calls == before + 1
    assert [read(inbox, uids[i]) for i in (0, 2, 3)] == small
    store.close()


def test_the_cache_stays_within_its_bytes(pgServer, pgDatabase):
    datas = distinct(60)
    uids = filled(pgServer, pgDatabase, datas)
    limit = 5 * len(datas[-1])
    store = makeStore(pgServer, pgDatabase, bodyCacheBytes=limit)
    inbox = openInbox(store)
    inbox.prefetch(uids)
    assert 0 < store.bodies.size <= limit
    assert [read(inbox, uid) for uid in uids] == datas
    assert 0 < store.bodies.size <= limit
    assert len(store.bodies) <= 5
    store.close()


def test_no_cache_means_a_query_per_open(pgServer, pgDatabase):
    datas = distinct(5)
    uids = filled(pgServer, pgDatabase, datas)
    count = Counting()
    store = makeStore(pgServer, pgDatabase, runner=count, bodyCacheBytes=0)
    inbox = openInbox(store)
    before = count.calls
    inbox.prefetch(uids)
    assert count.calls == before  # no read ahead without a cache
    assert [read(inbox, uid) for uid in uids + uids] == datas + datas
    assert count.calls == before + 10
    assert store.bodies.size == 0
    store.close()


def test_body_cache_is_lru_and_bounded():
    cache = BodyCache(100, maxItem=60)
    cache.put(b"a", b"x" * 40)
    cache.put(b"b", b"y" * 40)
    assert cache.get(b"a") == b"x" * 40  # a is now the most recent
    cache.put(b"c", b"z" * 40)  # 120 > 100: the least recently used (b) goes
    assert cache.get(b"b") is None
    assert cache.get(b"a") is not None and cache.get(b"c") is not None
    assert cache.size == 80
    cache.put(b"d", b"w" * 61)  # over maxItem: not kept
    assert cache.get(b"d") is None and cache.size == 80
    cache.put(b"a", b"x" * 40)  # again: counted once
    assert cache.size == 80 and len(cache) == 2
    assert BodyCache(0).maxItem == 0


@pytest.mark.parametrize("size", [2, 1000, IN_MEMORY])
def test_read_bodies_agrees_with_read_one(pgServer, pgDatabase, size):
    # An exact 1 MiB body is still "small" (batched); a batch gives what a single read gives.
    data = b"q" * (size - 2) + b"\r\n"
    uids = filled(pgServer, pgDatabase, [data, msg(1)])
    store = makeStore(pgServer, pgDatabase)
    inbox = openInbox(store)
    folderId = inbox._index.folderId
    found = store.db.call(sql.readBodies, folderId, uids)
    h, f = store.db.call(sql.readOne, folderId, uids[0], None)
    assert [(u, d) for u, _, d in found] == [(uids[0], data), (uids[1], msg(1))]
    assert f.getvalue() == data
    assert found[0][1] == h == hashlib.sha256(data).digest()
    store.close()


def test_refresh_with_nothing_changed_is_one_statement_outside_a_transaction(pgServer, pgDatabase, monkeypatch):
    datas = distinct(3)
    uids = filled(pgServer, pgDatabase, datas)
    store = makeStore(pgServer, pgDatabase)
    inbox = openInbox(store)
    calls = []
    real = Database.call

    def call(self, f, *args, **kw):
        calls.append((f.__name__, kw.get("transaction", True)))
        return real(self, f, *args, **kw)

    monkeypatch.setattr(Database, "call", call)
    result(inbox.refresh())
    assert calls == [("folderById", False)]
    # Another node changes the folder: the next refresh reads the delta and sees it.
    other = makeStore(pgServer, pgDatabase)
    result(openInbox(other).setFlags([uids[1]], ["\\Seen"], "add"))
    other.close()
    calls.clear()
    result(inbox.refresh())
    assert calls[0] == ("folderById", False) and ("delta", True) in calls
    assert inbox.get(uids[1]).flags == {"\\Seen"}
    store.close()
