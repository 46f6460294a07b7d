"""
The PostgreSQL store's message list index in the database (schema version
7, mailnet/store/postgres/listindex.py): written in the transaction of
the message, shared by two store objects (two nodes) on one database,
answered after a restart without reading a body, and filled by
``upgrade`` for a database at version 6.
"""

from __future__ import annotations

from mailnet.store.conformance_summaries import HTML, PLAIN
from mailnet.store.interfaces import INBOX, SEEN
from mailnet.store.postgres import PostgresStore, sql
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.schema import VERSION, currentVersion, upgrade
from mailnet.store.testing import result, syncRunner
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase

USER = "alice@example.test"


def makeStore(pgServer, dbname):
    return PostgresStore(Database(pgServer.settings(dbname), runner=syncRunner), runner=syncRunner)


def deliver(store, data, date, user=USER):
    d = store.newDelivery()
    d.addRecipient(user)
    d.write(data)
    [(_, _, uid)] = result(d.commit(internalDate=date))
    return uid


def refuseBodyReads(monkeypatch):
    """From now on any read of a message body is recorded and fails (the index must answer alone)."""
    reads = []

    def refuse(conn, folderId, uid, *args):
        reads.append(uid)
        raise AssertionError("a body was read to answer a message list")

    monkeypatch.setattr(sql, "readBody", refuse)
    return reads


def test_a_delivery_writes_its_list_fields_in_its_transaction(pgServer, pgDatabase):
    store = makeStore(pgServer, pgDatabase)
    try:
        deliver(store, PLAIN, 1000)
        deliver(store, PLAIN, 1001, "bob@example.test")  # the same body: no second row
        with pgServer.connect(pgDatabase) as conn:
            rows = conn.execute("SELECT s.fields FROM body_summaries s JOIN messages m ON m.body_hash = s.hash "
                                "GROUP BY s.hash, s.fields").fetchall()
        assert len(rows) == 1
        assert '"subject":"Lunch"' in rows[0][0] and "Shall we meet at noon?" in rows[0][0]
    finally:
        store.close()


def test_a_restarted_node_lists_without_reading_a_body(pgServer, pgDatabase, monkeypatch):
    store = makeStore(pgServer, pgDatabase)
    uids = [deliver(store, PLAIN if n % 2 else HTML, 1000 + n) for n in range(4)]
    account = result(store.getAccount(USER))
    inbox = result(account.openFolder(INBOX))
    ids = [inbox.emailIds([u])[u] for u in uids]
    inbox.close()
    before = result(account.emailSummaries(ids))  # the thread index takes them in
    store.close()
    reads = refuseBodyReads(monkeypatch)
    restarted = makeStore(pgServer, pgDatabase)
    try:
        account = result(restarted.getAccount(USER))
        listed = result(account.listEmails(limit=10))
        assert listed.ids == list(reversed(ids)) and listed.total == 4
        assert result(account.emailSummaries(listed.ids)) == before
        assert reads == []
        assert account.summaries.built == 0  # no body summarised on the spot either
    finally:
        restarted.close()


def test_two_nodes_share_one_index(pgServer, pgDatabase):
    a, b = makeStore(pgServer, pgDatabase), makeStore(pgServer, pgDatabase)
    try:
        onA, onB = result(a.getAccount(USER)), result(b.getAccount(USER))
        inboxA = result(onA.openFolder(INBOX))  # A holds INBOX open, as an IMAP session does
        assert result(onA.listEmails()).total == 0
        uid = deliver(a, PLAIN, 1000)
        emailId = inboxA.emailIds([uid])[uid]
        # B lists what A delivered, with its fields
        assert result(onB.listEmails()).ids == [emailId]
        s = result(onB.emailSummaries([emailId]))[emailId]
        assert (s.subject, s.sender, s.preview) == ("Lunch", (("Alice", "alice@example.test"),),
                                                  "Shall we meet at noon?")
        # a flag set on B is in A's next answer (no notification needed)
        inboxB = result(onB.openFolder(INBOX))
        result(inboxB.setFlags([uid], [SEEN], "add"))
        assert result(onA.emailSummaries([emailId]))[emailId].flags == frozenset({SEEN})
        # an expunge on B: gone from A's list at once
        result(inboxB.expunge([uid]))
        assert result(onA.listEmails()).total == 0
        assert result(onA.emailSummaries([emailId])) == {}
        inboxA.close()
        inboxB.close()
    finally:
        a.close()
        b.close()


def _downgrade(conn):
    """The database as version 6 had it: no list index (and no version 8 tokens table, no version 10
    uploads, no version 11 webmail sessions)."""
    conn.execute("DROP TABLE webmail_sessions")
    conn.execute("DROP TABLE upload_chunks, uploads")
    conn.execute("DROP TABLE user_documents")
    conn.execute("DROP TABLE tokens")
    conn.execute("DROP TABLE body_summaries")
    conn.execute("DROP INDEX messages_received")
    conn.execute("DROP INDEX messages_folder_received")
    conn.execute("UPDATE mailnet_schema SET version = 6")


def test_upgrade_from_version_6_fills_the_index(pgServer, pgDatabase, monkeypatch):
    monkeypatch.setattr("mailnet.store.postgres.listindex.FILL_BATCH", 1)  # one transaction per body
    store = makeStore(pgServer, pgDatabase)
    for n in range(5):
        deliver(store, PLAIN if n % 2 else HTML, 1000 + n)
    account = result(store.getAccount(USER))
    result(account.emailSummaries(result(account.listEmails()).ids))  # threads indexed (version 3's index)
    store.close()
    with pgServer.connect(pgDatabase) as conn:
        with conn.transaction():
            _downgrade(conn)
        notes = []
        assert upgrade(conn, notes=notes) == (6, VERSION)
        assert currentVersion(conn) == VERSION
        assert conn.execute("SELECT count(*) FROM body_summaries").fetchone()[0] == 2
        assert len(notes) == 1 and "list fields of 2 bodies" in notes[0]
        # A body without fields (one stored by an old node meanwhile): the next upgrade summarises it.
        conn.execute("DELETE FROM body_summaries WHERE hash = (SELECT hash FROM body_summaries ORDER BY hash LIMIT 1)")
        notes = []
        assert upgrade(conn, notes=notes) == (VERSION, VERSION)
        assert len(notes) == 1 and "list fields of 1 bodies" in notes[0]
        assert upgrade(conn, notes=notes) == (VERSION, VERSION) and len(notes) == 1
    reads = refuseBodyReads(monkeypatch)
    restarted = makeStore(pgServer, pgDatabase)
    try:
        account = result(restarted.getAccount(USER))
        listed = result(account.listEmails())
        assert listed.total == 5
        found = result(account.emailSummaries(listed.ids))
        assert sorted(s.subject for s in found.values()) == ["Lunch", "Lunch", "News", "News", "News"]
        assert reads == [] and account.summaries.built == 0
    finally:
        restarted.close()
