"""
The sweep of unreferenced bodies (mailnet/store/postgres/gc.py) in
process, on a real PostgreSQL and moto's S3 server: an expunged message's
object goes once it is older than the grace period, not before; an object
whose row exists (a COPY, a second delivery of the same bytes) is never
removed; a dry run removes nothing; a body row left without a message
(both modes) goes with its chunks; a delivery whose transaction has not
committed yet keeps its object (the sweep waits for its lock); two sweeps
never run at once.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time

import pytest

from mailnet.store.interfaces import INBOX
from mailnet.store.postgres import PostgresStore, gc, sql
from mailnet.store.postgres.db import Database
from mailnet.store.testing import msg, result, syncRunner
from tests.store import postgres_fixture, s3_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase
s3Server = s3_fixture.s3Server

USER = "alice@example.test"
DAY = 86400.0
_prefixes = itertools.count(1)


def later(seconds):
    return lambda: time.time() + seconds


@pytest.fixture
def env(pgServer, pgDatabase, s3Server):
    prefix = f"gc{os.getpid()}-{next(_prefixes)}/"
    made = []

    def store(objects=True):
        s = PostgresStore(Database(pgServer.settings(pgDatabase), runner=syncRunner,
                                   objects=s3Server.objectStore(prefix) if objects else None), runner=syncRunner)
        made.append(s)
        return s

    class Env:
        pass

    e = Env()
    e.store, e.prefix = store, prefix
    e.keys = lambda: sorted(s3Server.keys(prefix))
    e.key = lambda body: prefix + hashlib.sha256(body).hexdigest()

    def rows(query, *args):
        with pgServer.connect(pgDatabase) as conn:
            return conn.execute(query, args).fetchall()

    e.rows = rows
    e.connect = lambda: pgServer.connect(pgDatabase)
    yield e
    for s in made:
        s.close()


def sweep(store, grace=DAY, **kw):
    return gc.sweep(store.db, store.db.objects, grace, **kw)


def inbox(store, user=USER):
    return result(result(store.getAccount(user)).openFolder(INBOX))


def test_an_expunged_messages_object_goes_after_the_grace_period_and_not_before(env):
    store = env.store()
    box = inbox(store)
    gone = result(box.append(msg(1)))
    result(box.append(msg(2)))
    assert env.keys() == sorted([env.key(msg(1)), env.key(msg(2))])
    result(box.expunge([gone]))
    assert env.rows("SELECT count(*) FROM bodies") == [(1,)]  # the row went with its message
    assert env.keys() == sorted([env.key(msg(1)), env.key(msg(2))])  # its object did not
    # Within the grace period: kept.
    report = sweep(store)
    assert (report.objects, report.orphans, report.young, report.removed) == (2, 1, 1, 0)
    assert env.keys() == sorted([env.key(msg(1)), env.key(msg(2))])
    # A dry run past it: counted, nothing removed.
    report = sweep(store, dryRun=True, now=later(DAY + 60))
    assert (report.orphans, report.young, report.removed) == (1, 0, 1)
    assert "would remove" in report.lines()[1]
    assert env.keys() == sorted([env.key(msg(1)), env.key(msg(2))])
    # Past it: removed; the other message still reads.
    report = sweep(store, now=later(DAY + 60))
    assert (report.orphans, report.removed, report.removedBytes) == (1, 1, len(msg(1)))
    assert env.keys() == [env.key(msg(2))]
    assert sweep(store, now=later(DAY + 60)).removed == 0


def test_an_object_whose_row_exists_is_never_removed(env):
    store = env.store()
    box = inbox(store)
    trash = result(result(store.getAccount(USER)).openFolder("Trash"))
    first = result(box.append(msg(1)))
    result(box.copyTo([first], trash))  # a COPY: the same row
    d = store.newDelivery()  # a second delivery of the same bytes, to bob
    d.addRecipient("bob@example.test")
    d.write(msg(1))
    result(d.commit())
    result(box.expunge([first]))  # one reference gone, two left
    report = sweep(store, grace=0, now=later(DAY))
    assert (report.rows, report.orphans, report.removed) == (0, 0, 0)
    assert env.keys() == [env.key(msg(1))]
    f = result(trash.openMessage(trash.messages()[0].uid))
    assert f.read() == msg(1)
    f.close()


def test_a_body_row_without_a_message_goes_with_its_chunks(env):
    store = env.store(objects=False)
    box = inbox(store)
    result(box.append(msg(1)))
    result(inbox(store, "bob@example.test").append(msg(2)))
    # An account's rows deleted by hand: its messages go (cascade), its bodies stay.
    with env.connect() as conn:
        conn.execute("DELETE FROM accounts WHERE username = %s", (USER,))
    assert env.rows("SELECT count(*) FROM bodies") == [(2,)]
    report = sweep(store, dryRun=True)
    assert (report.rows, report.rowChunks, report.rowBytes) == (1, 1, len(msg(1)))
    assert env.rows("SELECT count(*) FROM body_chunks") == [(2,)]
    report = sweep(store)
    assert (report.rows, report.rowChunks) == (1, 1)
    assert env.rows("SELECT count(*) FROM bodies") == [(1,)]
    assert env.rows("SELECT count(*) FROM body_chunks") == [(1,)]  # no chunk without its row
    assert report.objects == 0  # bodies in the database: no object store to list


def test_an_upload_whose_transaction_has_not_committed_keeps_its_object(env):
    store = env.store()
    box = inbox(store)
    gone = result(box.append(msg(1)))
    result(box.expunge([gone]))  # msg(1)'s object: no row, and (with grace 0) a candidate
    spool = sql.Spool.of(msg(1))
    writer = env.connect()
    tx = writer.transaction()
    tx.__enter__()
    sql.storeBody(writer, spool, store.db.objects)  # the same bytes again: row made, object PUT, not committed
    out = {}
    sweeper = threading.Thread(target=lambda: out.update(report=sweep(store, grace=0, now=later(60))))
    sweeper.start()
    try:
        # The sweep waits for the body's lock (held by the writer's transaction) ...
        deadline = time.monotonic() + 30
        while not env.rows("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            assert time.monotonic() < deadline, "the sweep did not wait for the uncommitted upload"
            assert sweeper.is_alive(), out
            time.sleep(0.05)
    finally:
        tx.__exit__(None, None, None)  # ... which commits now
        writer.close()
        sweeper.join(30)
    assert out["report"].kept == 1 and out["report"].removed == 0
    assert env.keys() == [env.key(msg(1))]


def test_one_sweep_at_a_time(env):
    store = env.store()
    with env.connect() as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (gc.SWEEP_LOCK,)).fetchone()[0]
        assert sweep(store) is None  # another node is sweeping
        other.execute("SELECT pg_advisory_unlock(%s)", (gc.SWEEP_LOCK,))  # (a close frees it a moment later)
    assert sweep(store) is not None
