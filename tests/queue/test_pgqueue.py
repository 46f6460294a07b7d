"""
The queue shared in PostgreSQL (mailnet/queue/pgspool.py), in process, on
the real test PostgreSQL (tests/store/postgres_fixture.py): two
``PostgresSpool`` objects are two nodes.  Database work runs synchronously
(the runner given to Database), so no test waits on a clock: a lease that
ran out is made by moving ``lease_until`` into the past.
"""

from __future__ import annotations

import pytest
from twisted.internet import defer, task

from mailnet.queue import pgadmin
from mailnet.queue.control import AdminError
from mailnet.queue.envelope import parse
from mailnet.queue.pgspool import PostgresSpool, claim
from mailnet.queue.spool import LeaseLost
from mailnet.store.interfaces import TemporaryStoreError
from mailnet.store.postgres.db import Database
from tests.store import postgres_fixture

pgServer = postgres_fixture.pgServer
pgDatabase = postgres_fixture.pgDatabase


def sync(f, *a):
    return defer.maybeDeferred(f, *a)


class FakeRunner:
    stopping = False

    def __init__(self):
        self.items = {}
        self.claims = []
        self.losses = []

    def claimed(self, queueId):
        self.claims.append(queueId)

    def lost(self, queueId):
        self.losses.append(queueId)


@pytest.fixture
def nodes(pgServer, pgDatabase, tmp_path):
    made = []

    def make(name, runInThread=sync, directory=None):
        db = Database(pgServer.settings(pgDatabase), runner=sync)
        spool = PostgresSpool(db, str(tmp_path / (directory or name)), reactor=task.Clock(), lease=60, claimInterval=1,
                              batch=10, node=name, runInThread=runInThread)
        made.append(db)
        return spool

    yield make
    for db in made:
        db.close()


def put(spool, rcpts=("bob@ok.test",), body=b"Subject: hi\r\n\r\nbody\r\n"):
    writer = spool.newMessage("alice@example.test", [{"address": r} for r in rcpts])
    writer.write(body)
    out = []
    writer.commit().addBoth(out.append)
    assert isinstance(out[0], str), out
    return out[0]


def sql(pgServer, pgDatabase, query, args=()):
    with pgServer.connect(pgDatabase) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else None


def result(d):
    out = []
    d.addBoth(out.append)
    return out[0]


def test_a_new_item_is_a_committed_row_held_by_the_node_that_took_it(nodes, pgServer, pgDatabase):
    a = nodes("A")
    body = b"Subject: big\r\n\r\n" + b"x" * (600 * 1024) + b"\r\n"
    qid = put(a, body=body)
    [(owner, size, chunks)] = sql(pgServer, pgDatabase, "SELECT owner, size, chunks FROM queue_items")
    assert (owner, size, chunks) == ("A", len(body), 3)  # 256 KiB chunks
    assert b"".join(bytes(r[0]) for r in sql(pgServer, pgDatabase,
                                             "SELECT data FROM queue_chunks ORDER BY n")) == body
    assert a.ids() == [qid] and a.load(qid).recipients[0].address == "bob@ok.test"
    with a.openData(qid) as f:
        assert f.read() == body


def test_claims_skip_live_leases_and_take_over_a_dead_nodes_items(nodes, pgServer, pgDatabase):
    a, b = nodes("A"), nodes("B")
    body = b"Subject: t\r\n\r\n" + b"y" * (300 * 1024)
    qid = put(a, body=body)
    runner = FakeRunner()
    b.attach(runner)  # one look at once
    assert runner.claims == [] and b.ids() == []  # A's lease is alive
    sql(pgServer, pgDatabase, "UPDATE queue_items SET lease_until = 0")  # A died long ago
    b._tick()
    assert runner.claims == [qid] and b.ids() == [qid]
    with b.openData(qid) as f:
        assert f.read() == body  # copied chunk by chunk
    assert sql(pgServer, pgDatabase, "SELECT owner FROM queue_items") == [("B",)]
    # A comes back: every write of the item is fenced.
    envelope = a.load(qid)
    envelope.recipients[0].status = "sent"
    with pytest.raises(LeaseLost):
        a.save(envelope)
    with pytest.raises(LeaseLost):
        a.remove(qid)
    assert parse(bytes(sql(pgServer, pgDatabase, "SELECT envelope FROM queue_items")[0][0]), qid) \
        .recipients[0].status == "pending"
    b.detach()


def test_two_nodes_claiming_at_once_never_get_the_same_row(nodes, pgServer, pgDatabase):
    a = nodes("A")
    ids = {put(a) for _ in range(6)}
    sql(pgServer, pgDatabase, "UPDATE queue_items SET owner = NULL, lease_until = NULL")
    with pgServer.connect(pgDatabase) as c1, pgServer.connect(pgDatabase) as c2:
        with c1.transaction():
            first = claim(c1, "B", 60, 4, 1)
            with c2.transaction():
                c2.execute("SET LOCAL lock_timeout = '5s'")  # a claim that waited would fail, not hang
                second = claim(c2, "C", 60, 4, 1)  # does not wait for B's locked rows
    assert len(first) == 4 and len(second) == 2
    assert {r[0] for r in first} | {r[0] for r in second} == ids
    assert not {r[0] for r in first} & {r[0] for r in second}


def test_renewal_finds_an_item_taken_over_and_drops_it(nodes, pgServer, pgDatabase):
    a = nodes("A")
    qid = put(a)
    runner = FakeRunner()
    a.attach(runner)
    sql(pgServer, pgDatabase, "UPDATE queue_items SET owner = 'B'")
    result(a._renew())
    assert runner.losses == [qid] and a.ids() == []
    a.detach()


def test_commands_from_any_node(nodes, pgServer, pgDatabase):
    a = nodes("A")
    qid = put(a)
    other = put(a, rcpts=("carol@ok.test", "dave@ok.test"))
    sql(pgServer, pgDatabase, "UPDATE queue_items SET owner = NULL, lease_until = NULL WHERE id = %s", (other,))
    with pgServer.connect(pgDatabase) as conn:
        listed = pgadmin.handle(conn, "list")
        assert [(e["id"], e["node"]) for e in listed] == sorted([(qid, "A"), (other, None)])
        shown = pgadmin.handle(conn, "show", qid)
        assert shown["header"] == "Subject: hi\n" and shown["envelope"]["node"] == "A"
        # Held by a live node: the command goes to that node.
        assert pgadmin.handle(conn, "hold", qid) == {"server": True, "node": "A"}
        assert pgadmin.handle(conn, "flush")["recipients"] == 3
        # Held by nobody: changed here.
        pgadmin.handle(conn, "hold", other)
        assert parse(bytes(conn.execute("SELECT envelope FROM queue_items WHERE id = %s", (other,))
                           .fetchone()[0]), other).held
        assert conn.execute("SELECT next_try FROM queue_items WHERE id = %s", (other,)).fetchone()[0] is None
        pgadmin.handle(conn, "delete", other)
        with pytest.raises(AdminError, match="no queue item"):
            pgadmin.handle(conn, "show", other)
    assert sql(pgServer, pgDatabase, "SELECT id, command FROM queue_commands ORDER BY seq") == [
        (qid, "hold"), (qid, "flush")]


class ManualThreads:
    """A ``runInThread`` whose calls wait until the test runs them, one at a time, in order."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.calls.append((f, args, d))
        return d

    def runNext(self):
        f, args, d = self.calls.pop(0)
        defer.maybeDeferred(f, *args).chainDeferred(d)
        return args


def test_removals_asked_during_a_commit_share_the_next_transaction(nodes, pgServer, pgDatabase):
    a = nodes("A")
    ids = [put(a) for _ in range(5)]
    threads = ManualThreads()
    node = nodes("A", runInThread=threads, directory="A-async")  # node A's removals, with threads we run by hand
    fired = {}
    for qid in ids:
        d = node.removeItem(qid)
        d.addBoth(lambda r, qid=qid: fired.setdefault(qid, r))
    # One transaction in flight (the first removal); the other four wait for it.
    assert len(threads.calls) == 1 and threads.runNext() == ([ids[0]],)
    assert fired == {ids[0]: None}
    # Then the four together, in one transaction; a row another node took meanwhile is fenced.
    sql(pgServer, pgDatabase, "UPDATE queue_items SET owner = 'B' WHERE id = %s", (ids[3],))
    assert len(threads.calls) == 1
    assert [qid for qid in ids[1:] if qid in fired] == []  # nobody is answered before the commit
    assert threads.runNext() == (ids[1:],)
    assert threads.calls == []
    assert all(fired[qid] is None for qid in (ids[1], ids[2], ids[4]))
    assert fired[ids[3]].check(LeaseLost)
    assert sql(pgServer, pgDatabase, "SELECT id, owner FROM queue_items") == [(ids[3], "B")]


def test_removals_with_the_database_away_are_kept_and_done_again(nodes, pgServer, pgDatabase, monkeypatch):
    a = nodes("A")
    ids = [put(a) for _ in range(3)]
    real = a.db.call

    def away(f, *args, **kw):
        raise TemporaryStoreError("the database is unavailable; try again later")

    monkeypatch.setattr(a.db, "call", away)
    failures = []
    for qid in ids:
        a.removeItem(qid).addErrback(failures.append)
    assert [f.type for f in failures] == [TemporaryStoreError] * 3
    assert a.ids() == sorted(ids)  # still held: its lease is renewed, nobody else sends it
    monkeypatch.setattr(a.db, "call", real)
    result(a._retry())
    assert sql(pgServer, pgDatabase, "SELECT count(*) FROM queue_items") == [(0,)] and a.ids() == []


def test_claimed_messages_of_one_chunk_are_copied_many_per_query(nodes, pgServer, pgDatabase, monkeypatch):
    a, b = nodes("A"), nodes("B")
    bodies = [b"Subject: %d\r\n\r\nbody\r\n" % n for n in range(5)] + [b""]
    big = b"Subject: big\r\n\r\n" + b"z" * (600 * 1024) + b"\r\n"  # three chunks
    ids = {put(a, body=body): body for body in bodies + [big]}
    sql(pgServer, pgDatabase, "UPDATE queue_items SET lease_until = 0")  # A died
    queries = []
    real = b.db.call
    monkeypatch.setattr(b.db, "call", lambda f, *args, **kw: queries.append(f) or real(f, *args, **kw))
    runner = FakeRunner()
    b.attach(runner)
    assert sorted(runner.claims) == sorted(ids)
    for qid, body in ids.items():
        with b.openData(qid) as f:
            assert f.read() == body
    # The commands, the claim, one query for the six short messages, one per chunk of the long one.
    assert len(queries) == 1 + 1 + 1 + 3
    b.detach()


def test_a_claimed_message_missing_a_chunk_is_not_handed_over_cut_short(nodes, pgServer, pgDatabase):
    a, b = nodes("A"), nodes("B")
    big = b"Subject: big\r\n\r\n" + b"z" * (600 * 1024) + b"\r\n"
    qid = put(a, body=big)
    sql(pgServer, pgDatabase, "DELETE FROM queue_chunks WHERE n = 1")
    sql(pgServer, pgDatabase, "UPDATE queue_items SET lease_until = 0")
    runner = FakeRunner()
    b.attach(runner)
    assert runner.claims == [] and b.ids() == [] and not b.hasData(qid)
    b.detach()


def test_after_a_full_claim_a_node_that_delivered_it_claims_again_without_waiting(nodes, pgServer, pgDatabase):
    a = nodes("A")
    ids = [put(a) for _ in range(25)]
    sql(pgServer, pgDatabase, "UPDATE queue_items SET owner = NULL, lease_until = NULL")  # a dead node's backlog
    b = nodes("B")  # claims 10 at a time (the fixture's batch)
    runner = FakeRunner()
    b.attach(runner)
    assert len(runner.claims) == 10
    first = list(runner.claims)
    for qid in first[:3]:
        result(b.removeItem(qid))
    assert len(runner.claims) == 10  # still holds 7: no look before claim_interval
    for qid in first[3:6]:
        result(b.removeItem(qid))
    # Holds 4, less than half a batch: it looks again at once (the clock has not moved).
    assert len(runner.claims) == 20 and set(runner.claims) <= set(ids)
    for qid in runner.claims[6:]:
        result(b.removeItem(qid))
    assert len(runner.claims) == 25 and sorted(runner.claims) == sorted(ids)  # the last, partial claim
    for qid in runner.claims[20:]:
        result(b.removeItem(qid))
    assert len(runner.claims) == 25  # a claim short of a batch: back to claim_interval
    b.detach()
