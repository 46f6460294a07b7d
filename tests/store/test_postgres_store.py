"""
The PostgreSQL store beyond the conformance suites: UIDs from concurrent
processes, bodies streamed in chunks and shared by copies, a database
outage and a statement timeout as temporary errors, two store objects (two
nodes) on one database, the schema check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from mailnet.store.interfaces import INBOX, TemporaryStoreError, messageBytes
from mailnet.store.postgres import PostgresStore
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.schema import MIGRATIONS, VERSION, SchemaError, checkVersion, currentVersion, upgrade
from mailnet.store.postgres.sql import CHUNK, IN_MEMORY
from mailnet.store.testing import Recorder, failure, msg, result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

USER = "alice@example.test"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def makeStore(pgServer, dbname, **kw):
    return PostgresStore(Database(pgServer.settings(dbname), runner=syncRunner), runner=syncRunner, **kw)


@pytest.fixture
def store(pgServer, pgDatabase):
    s = makeStore(pgServer, pgDatabase)
    yield s
    s.close()


def count(pgServer, dbname, query):
    with pgServer.connect(dbname) as conn:
        return conn.execute(query).fetchone()[0]


_WORKER = textwrap.dedent("""
    import sys
    from mailnet.store.postgres import PostgresStore
    from mailnet.store.postgres.db import Database, Settings
    from mailnet.store.testing import result, syncRunner
    host, dbname, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = PostgresStore(Database(Settings(host=host, dbname=dbname, user="mailnet"), runner=syncRunner),
                          runner=syncRunner)
    inbox = result(result(store.getAccount("alice@example.test")).openFolder("INBOX"))
    for i in range(n):
        if i % 2:
            d = store.newDelivery()
            d.addRecipient("alice@example.test")
            d.write(b"Subject: %s %d\\r\\n\\r\\nbody\\r\\n" % (tag.encode(), i))
            result(d.commit())
        else:
            uid = result(inbox.append(b"Subject: %s %d\\r\\n\\r\\nappended\\r\\n" % (tag.encode(), i)))
            if i % 3 == 0:
                result(inbox.expunge([uid]))
    store.close()
""")


def test_uids_are_never_reused_by_concurrent_processes(pgServer, pgDatabase, store):
    result(store.getAccount(USER))  # the account exists before the race
    env = dict(os.environ, PYTHONPATH=ROOT)
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, pgServer.dir, pgDatabase, tag, str(n)], env=env)
             for tag in ("a", "b", "c")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    inbox = result(result(store.getAccount(USER)).openFolder(INBOX))
    live = [i.uid for i in inbox.messages()]
    gone = inbox.expungedSince(0)
    expunged = 3 * len(range(0, n, 6))
    assert len(live) == 3 * n - expunged and len(gone) == expunged
    assert len(set(live) | set(gone)) == 3 * n  # every UID handed out once
    assert sorted(set(live) | set(gone)) == list(range(1, 3 * n + 1))
    assert inbox.uidNext == 3 * n + 1
    ids = inbox.emailIds(live)
    assert len(set(ids.values())) == len(live)


def test_a_big_body_is_streamed_in_chunks(pgServer, pgDatabase, store):
    piece = (b"x" * 998 + b"\r\n") * 64  # 64,000 bytes of lines
    size = 20 * 1024 * 1024
    pieces = size // len(piece)
    header = b"Subject: big\r\n\r\n"
    digest = hashlib.sha256(header)
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
        assert messageBytes(f) is None  # a file, not the whole body in memory
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
    assert got.digest() == digest.digest()
    total = len(header) + pieces * len(piece)
    assert inbox.get(uid).size == total
    assert count(pgServer, pgDatabase, "SELECT chunks FROM bodies") == -(-total // CHUNK)
    # Neither way held the 20 MB body: a few chunks at most.
    assert peakIn < 4 * IN_MEMORY, peakIn
    assert peakOut < 4 * IN_MEMORY, peakOut


def test_copies_share_one_body_which_goes_with_the_last_message(pgServer, pgDatabase, store):
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder(INBOX))
    trash = result(account.openFolder("Trash"))
    uid = result(inbox.append(msg(1)))
    d = store.newDelivery()
    d.addRecipient(USER)
    d.addRecipient("bob@example.test")
    d.write(msg(1))
    result(d.commit())
    [(_, copied)] = result(inbox.copyTo([uid], trash))
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM messages") == 4
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM bodies") == 1
    result(inbox.expunge([i.uid for i in inbox.messages()]))
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM bodies") == 1
    result(trash.expunge([copied]))
    bob = result(result(store.getAccount("bob@example.test")).openFolder(INBOX))
    result(bob.expunge([i.uid for i in bob.messages()]))
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM bodies") == 0
    assert count(pgServer, pgDatabase, "SELECT count(*) FROM body_chunks") == 0


def test_an_outage_is_a_temporary_error_and_recovery_follows(pgServer, store):
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder(INBOX))
    result(inbox.append(msg(1)))
    pgServer.stop()
    try:
        failure(inbox.append(msg(2)), TemporaryStoreError)
        failure(inbox.refresh(), TemporaryStoreError)
        d = store.newDelivery()
        d.addRecipient(USER)
        d.write(msg(3))
        e = failure(d.commit(), TemporaryStoreError)
        assert "unavailable" in str(e) and pgServer.dir not in str(e)
        with pytest.raises(TemporaryStoreError):
            store.newDelivery().addRecipient(USER, "Archive")
        assert len(inbox.messages()) == 1  # the snapshot is still there
    finally:
        pgServer.start()
    # The reactor-thread lookup fails fast for a moment after an outage, then works.
    with pytest.raises(TemporaryStoreError):
        store.newDelivery().addRecipient(USER, "Archive")
    store.db.downUntil = 0
    store.newDelivery().addRecipient(USER, "Archive")
    uid = result(inbox.append(msg(4)))
    assert [i.uid for i in inbox.messages()] == [1, uid]


def test_a_statement_timeout_is_a_temporary_error(pgServer, pgDatabase):
    settings = pgServer.settings(pgDatabase)
    store = PostgresStore(Database(dataclasses.replace(settings, statement_timeout=1), runner=syncRunner),
                          runner=syncRunner)
    try:
        inbox = result(result(store.getAccount(USER)).openFolder(INBOX))
        with pgServer.connect(pgDatabase) as other:
            with other.transaction():
                other.execute("SELECT * FROM folders FOR UPDATE")  # another node holds the folder
                failure(inbox.append(msg(1)), TemporaryStoreError)
        # The failed transaction took nothing: UID 1 was never visible, so it is given now.
        assert result(inbox.append(msg(1))) == 1
    finally:
        store.close()


def test_two_nodes_on_one_database(pgServer, pgDatabase, store):
    other = makeStore(pgServer, pgDatabase)
    try:
        a = result(result(store.getAccount(USER)).openFolder(INBOX))
        b = result(result(other.getAccount(USER)).openFolder(INBOX))
        heard = Recorder()
        b.addListener(heard)
        uid = result(a.append(msg(1)))
        result(a.setFlags([uid], ["\\Seen"], "add"))
        result(b.refresh())
        assert heard.kinds() == ["added"] and b.get(uid).flags == {"\\Seen"}
        assert b.emailIds([uid]) == a.emailIds([uid])
        heard.clear()
        result(b.setFlags([uid], ["\\Flagged"], "add"))
        result(a.refresh())
        assert a.get(uid).flags == {"\\Seen", "\\Flagged"}
        result(a.expunge([uid]))
        result(b.refresh())
        assert heard.kinds() == ["flags", "expunged"] and b.messages() == []
        assert b.highestModSeq == a.highestModSeq
    finally:
        other.close()


def test_one_change_journal_for_every_node(pgServer, pgDatabase, store):
    other = makeStore(pgServer, pgDatabase)
    try:
        accountA = result(store.getAccount(USER))
        accountB = result(other.getAccount(USER))
        s0 = result(accountB.currentState())
        assert result(accountA.currentState()) == s0
        a = result(accountA.openFolder(INBOX))
        uid = result(a.append(msg(1)))
        emailId = a.emailIds([uid])[uid]
        result(accountA.createFolder("Projects"))
        # Node B never opened a folder: the journal in the database has A's changes.
        c = result(accountB.changesSince(s0))
        assert c.emails.created == [emailId]
        assert len(c.mailboxes.created) == 1 and c.mailboxes.updated == [a.mailboxId]
        assert result(accountB.currentState()) == result(accountA.currentState())
        # A delivery made through node B shows in A's answer.
        s1 = result(accountA.currentState())
        d = other.newDelivery()
        d.addRecipient(USER)
        d.write(msg(2))
        result(d.commit())
        assert len(result(accountA.changesSince(s1)).emails.created) == 1
    finally:
        other.close()


def test_schema_versions(pgServer):
    name = pgServer.newDatabase(schema=False)
    try:
        with pgServer.connect(name) as conn:
            assert currentVersion(conn) == 0
            with pytest.raises(SchemaError, match="mailnet db init"):
                checkVersion(conn)
            # Version 1 with an account in it, upgraded: the account gets its journal.
            conn.execute(MIGRATIONS[0])
            conn.execute("UPDATE mailnet_schema SET version = 1")
            conn.execute("INSERT INTO accounts (username) VALUES ('old@example.test')")
            with pytest.raises(SchemaError, match="version 1, this mailnet needs .*: run `mailnet db upgrade`"):
                checkVersion(conn)
            assert upgrade(conn) == (1, VERSION)
            assert conn.execute("SELECT count(*) FROM change_meta").fetchone()[0] == 1
            assert upgrade(conn) == (VERSION, VERSION)
            checkVersion(conn)
            assert currentVersion(conn) == VERSION
            conn.execute("UPDATE mailnet_schema SET version = %s", (VERSION + 1,))
            with pytest.raises(SchemaError, match="newer than this mailnet"):
                checkVersion(conn)
    finally:
        pgServer.dropDatabase(name)


def test_expunged_uids_kept_in_memory_are_bounded(store, monkeypatch):
    from mailnet.store.postgres import sql

    monkeypatch.setattr(sql, "EXPUNGED_KEPT", 3)
    inbox = result(result(store.getAccount(USER)).openFolder(INBOX))
    uids = [result(inbox.append(msg(n))) for n in range(10)]
    marks = []
    for uid in uids:
        marks.append(inbox.highestModSeq)
        result(inbox.expunge([uid]))
    assert inbox.expungedSince(marks[-2]) == uids[-2:]
    assert inbox.expungedSince(marks[-3]) == uids[-3:]
    assert inbox.expungedSince(0) is None  # forgotten: the client resyncs
    # A new handle after a restart reads the last ones from the database, the same way.
    store._accounts.clear()
    again = result(result(store.getAccount(USER)).openFolder(INBOX))
    assert again.expungedSince(marks[-3]) == uids[-3:] and again.expungedSince(0) is None


def test_every_node_gives_a_conversation_the_same_thread_id(pgServer, pgDatabase, store):
    from mailnet.store.conformance_threads import mail

    other = makeStore(pgServer, pgDatabase)
    try:
        a = result(result(store.getAccount(USER)).openFolder(INBOX))
        accountB = result(other.getAccount(USER))
        b = result(accountB.openFolder(INBOX))
        s0 = result(accountB.currentState())
        first = result(a.append(mail("n-a")))
        reply = result(b.append(mail("n-b", "Re: Plans", refs=["n-a"])))
        result(a.refresh())
        result(b.refresh())
        # Node A works out the first message's thread, node B the reply's
        # only: with an index per node, B would start a thread of its own.
        ta = result(a.threadIds([first]))
        tb = result(b.threadIds([reply]))
        assert tb[reply] == ta[first]
        assert result(a.threadIds([first, reply])) == result(b.threadIds([first, reply]))
        # The Thread was journalled once, whichever node looked.
        c = result(accountB.changesSince(s0))
        assert c.threads.created == [ta[first]] and c.threads.updated == []
    finally:
        other.close()
