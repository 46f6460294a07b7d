"""
Cross-node notifications in process (mailnet/store/postgres/listen.py and
PostgresStore.resync), against the test PostgreSQL: the listening thread
hears other stores' NOTIFYs and not its own, and after its connection is
ended it listens again and asks for a resync; a resync tells an open
folder's listeners and the account listeners of a change whose NOTIFY was
never heard.  The same with real nodes: tests/test_postgres_push.py.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from mailnet.store.interfaces import INBOX
from mailnet.store.postgres import PostgresStore
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.listen import Listener
from mailnet.store.testing import Recorder, msg, result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

USER = "alice@example.test"


def eventually(check, seconds=20, what="the condition"):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def makeStore(pgServer, dbname):
    return PostgresStore(Database(pgServer.settings(dbname), runner=syncRunner), runner=syncRunner)


def test_the_listener_hears_others_ignores_itself_and_resyncs_after_a_lost_connection(pgServer, pgDatabase):
    db = Database(pgServer.settings(pgDatabase), runner=syncRunner)
    heard, lock = [], threading.Lock()

    def record(*what):
        with lock:
            heard.append(what)

    reactor = SimpleNamespace(callFromThread=lambda f, *a: f(*a))  # recorded in the listening thread
    listener = Listener(db, reactor, lambda aid: record("change", aid), lambda: record("resync"),
                        poll=0.1, backoff=0.1)
    listener.start()
    try:
        assert listener.ready.wait(20)
        with pgServer.connect(pgDatabase) as conn:
            conn.execute("SELECT pg_notify('mailnet_changes', %s)", (f"8 {db.applicationName}",))  # its own
            conn.execute("SELECT pg_notify('mailnet_changes', '7 mailnet-othernode')")
        eventually(lambda: ("change", 7) in heard, what="another store's notification")
        assert ("change", 8) not in heard and ("resync",) not in heard
        with pgServer.connect(pgDatabase) as conn:
            ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                                 (db.applicationName + "-listen",)).fetchall()
        assert ended == [(True,)]
        eventually(lambda: ("resync",) in heard, what="the resync after the reconnect")
        assert listener.ready.is_set()
        with pgServer.connect(pgDatabase) as conn:
            conn.execute("SELECT pg_notify('mailnet_changes', '9 mailnet-othernode')")
        eventually(lambda: ("change", 9) in heard, what="a notification after the reconnect")
    finally:
        listener.stop()
        db.close()


class AccountHeard:
    def __init__(self):
        self.told = []

    def accountChanged(self, account, state, types):
        self.told.append((state, set(types)))


def test_a_resync_tells_folders_and_account_listeners_of_a_change_not_notified(pgServer, pgDatabase):
    a, b = makeStore(pgServer, pgDatabase), makeStore(pgServer, pgDatabase)  # no listeners: nothing notified
    try:
        inboxA = result(result(a.getAccount(USER)).openFolder(INBOX))
        accountB = result(b.getAccount(USER))
        inboxB = result(accountB.openFolder(INBOX))
        folderHeard, accountHeard = Recorder(), AccountHeard()
        inboxB.addListener(folderHeard)
        accountB.addListener(accountHeard)
        uid = result(inboxA.append(msg(1)))
        assert folderHeard.events == [] and accountHeard.told == []
        b.resync()
        assert folderHeard.events == [("added", inboxB, [uid])]
        [(state, types)] = accountHeard.told
        assert {"Email", "Mailbox"} <= types and state == result(accountB.currentState())
    finally:
        a.close()
        b.close()
