"""
The PostgreSQL store's quota beyond the conformance suite
(mailnet/store/conformance_quota.py): the per-account counter in the
database kept by concurrent processes, the migration that counts what is
there, the recount of a wrong counter (by itself and ``mailnet db
recount``), the synchronous usage of two nodes, one warning across nodes.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mailnet.store.interfaces import INBOX
from mailnet.store.postgres import PostgresStore
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.schema import VERSION, upgrade
from mailnet.store.quota import QuotaPolicy
from mailnet.store.testing import msg, result, syncRunner
from tests.store import postgres_fixture
from tests.store.test_postgres_store import _WORKER, ROOT

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

USER = "alice@example.test"
POLICY = QuotaPolicy(storage=100_000, messages=50, warning=50, grace=0)


def makeStore(pgServer, dbname):
    store = PostgresStore(Database(pgServer.settings(dbname), runner=syncRunner), runner=syncRunner)
    store.quotaPolicy = POLICY
    return store


def deliver(store, data, user=USER):
    d = store.newDelivery()
    d.addRecipient(user)
    d.write(data)
    return result(d.commit())


def counted(pgServer, dbname, user=USER):
    """(counter row, the messages' sum) of a user, straight from the database."""
    with pgServer.connect(dbname) as conn:
        row = conn.execute("SELECT q.storage, q.messages FROM quota_usage q JOIN accounts a ON a.id = q.account "
                           "WHERE a.username = %s", (user,)).fetchone()
        real = conn.execute("SELECT COALESCE(SUM(m.size), 0), COUNT(*) FROM messages m JOIN accounts a "
                            "ON a.id = m.account WHERE a.username = %s", (user,)).fetchone()
    return tuple(row) if row else None, tuple(real)


def test_the_counter_is_kept_by_concurrent_processes(pgServer, pgDatabase):
    store = makeStore(pgServer, pgDatabase)
    try:
        result(store.getAccount(USER))
        env = dict(os.environ, PYTHONPATH=ROOT)
        procs = [subprocess.Popen([sys.executable, "-c", _WORKER, pgServer.dir, pgDatabase, tag, "30"], env=env)
                 for tag in ("a", "b", "c")]
        assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
        row, real = counted(pgServer, pgDatabase)
        assert row == real and real[1] > 0
        usage = result(result(store.getAccount(USER)).quota())
        assert (usage.storage, usage.messages) == real
    finally:
        store.close()


def test_upgrading_to_version_4_counts_the_messages_there_are(pgServer, pgDatabase):
    store = makeStore(pgServer, pgDatabase)
    try:
        deliver(store, msg(1))
        deliver(store, msg(2, extra=b"x" * 300 + b"\r\n"))
    finally:
        store.close()
    with pgServer.connect(pgDatabase) as conn:
        conn.execute("DROP TABLE quota_usage")
        conn.execute("DROP TABLE queue_commands, queue_chunks, queue_items")  # version 5 (the shared queue)
        conn.execute("DROP TABLE webmail_sessions")  # version 11's (webmail sessions)
        conn.execute("DROP TABLE upload_chunks, uploads")  # version 10's (JMAP uploads)
        conn.execute("DROP TABLE user_documents")  # version 9's (JMAP documents)
        conn.execute("DROP TABLE tokens")  # version 8's
        conn.execute("DROP TABLE login_failures, directory_serial, users, aliases, migrated")  # version 6's
        conn.execute("DROP TABLE body_summaries")  # version 7's (the message list index)
        conn.execute("DROP INDEX messages_received, messages_folder_received")
        conn.execute("UPDATE mailnet_schema SET version = 3")
        conn.commit()
        assert upgrade(conn) == (3, VERSION)
    row, real = counted(pgServer, pgDatabase)
    assert row == real == (len(msg(1)) + len(msg(2, extra=b"x" * 300 + b"\r\n")), 2)


def test_a_wrong_counter_is_recounted(pgServer, pgDatabase):
    store = makeStore(pgServer, pgDatabase)
    try:
        deliver(store, msg(1))
        deliver(store, msg(2))
        with pgServer.connect(pgDatabase) as conn:  # lost by a bug, or edited by hand
            conn.execute("UPDATE quota_usage SET storage = 1, messages = 1")
        inbox = result(result(store.getAccount(USER)).openFolder(INBOX))
        try:
            # Taking two messages from a counter of one would go below zero: the sum is taken instead.
            result(inbox.expunge([m.uid for m in inbox.messages()]))
        finally:
            inbox.close()
        assert counted(pgServer, pgDatabase) == ((0, 0), (0, 0))
        # A counter that is missing altogether is made from the messages.
        deliver(store, msg(3))
        with pgServer.connect(pgDatabase) as conn:
            conn.execute("DELETE FROM quota_usage")
        deliver(store, msg(4))
        assert counted(pgServer, pgDatabase) == ((len(msg(3)) + len(msg(4)), 2),) * 2
    finally:
        store.close()


def test_mailnet_db_recount(pgServer, pgDatabase, tmp_path):
    store = makeStore(pgServer, pgDatabase)
    try:
        deliver(store, msg(1))
        deliver(store, msg(2), user="bob@example.test")
    finally:
        store.close()
    with pgServer.connect(pgDatabase) as conn:
        conn.execute("UPDATE quota_usage SET storage = 7777, messages = 77")
    conf = tmp_path / "mailnet.toml"
    conf.write_text(f'[postgres]\nhost = "{pgServer.dir}"\ndbname = "{pgDatabase}"\nuser = "mailnet"\n')
    out = subprocess.run([sys.executable, "-m", "mailnet", "--config", str(conf), "db", "recount"],
                         env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "quota usage recounted for 2 account(s)"
    assert counted(pgServer, pgDatabase) == ((len(msg(1)), 1),) * 2
    assert counted(pgServer, pgDatabase, "bob@example.test") == ((len(msg(2)), 1),) * 2


def test_synchronous_usage_of_two_nodes(pgServer, pgDatabase):
    a, b = makeStore(pgServer, pgDatabase), makeStore(pgServer, pgDatabase)
    try:
        assert a.quotaUsage(USER).messages == 0  # no account yet: nothing used
        accountA = result(a.getAccount(USER))
        deliver(b, msg(1))
        assert a.quotaUsage(USER).messages == 0  # cached: node A has not heard yet
        a.remoteChange(accountA.accountId)  # what LISTEN/NOTIFY calls (listen.py)
        usage = a.quotaUsage(USER)
        assert (usage.storage, usage.messages) == (len(msg(1)), 1)
        assert usage.limits.storage == 100_000
        # This node's own writes keep its cache without a query.
        inbox = result(accountA.openFolder(INBOX))
        try:
            result(inbox.append(msg(2)))
        finally:
            inbox.close()
        assert a.quotaUsage(USER).messages == 2
        a.quotaPolicy = QuotaPolicy()
        assert a.quotaUsage(USER) is None  # no limits: nothing to check
    finally:
        a.close()
        b.close()


def test_one_warning_across_nodes(pgServer, pgDatabase):
    a, b = makeStore(pgServer, pgDatabase), makeStore(pgServer, pgDatabase)
    try:
        accountA, accountB = result(a.getAccount(USER)), result(b.getAccount(USER))
        deliver(a, msg(1, extra=b"w" * 60_000 + b"\r\n"))
        assert [result(accountA.quotaWarning()), result(accountB.quotaWarning())] == [True, False]
        with pgServer.connect(pgDatabase) as conn:
            assert conn.execute("SELECT warned FROM quota_usage").fetchone()[0] is True
    finally:
        a.close()
        b.close()


def test_maildrop_lock_across_nodes(pgServer, pgDatabase):
    # The store's half of the POP3 lock, on two nodes (POP3 itself: tests/test_postgres_nodes.py).
    a, b = makeStore(pgServer, pgDatabase), makeStore(pgServer, pgDatabase)
    try:
        held = result(a.maildropLock(USER))
        assert held is not None and held.held
        assert result(b.maildropLock(USER)) is None  # node B: in use
        assert result(a.maildropLock(USER)) is None  # and on node A by another session
        other = result(b.maildropLock("bob@example.test"))  # another user's maildrop is free
        assert other is not None
        held.release()
        again = result(b.maildropLock(USER))
        assert again is not None
        # A session that dies without releasing (its connection closed) gives it back too.
        again._held._conn.close()
        result(a.maildropLock(USER)).release()
        other.release()
    finally:
        a.close()
        b.close()
