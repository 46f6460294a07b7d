"""
Two real mailnet nodes (separate data directories and ports on 127.0.0.1)
on one real PostgreSQL (tests/store/postgres_fixture.py) share the outbound
queue (docs/scaling.md): mail submitted with smtplib to either node is
relayed, through the test DNS server, to one aiosmtpd MX, which records
the EHLO name of the node that brought each message.

* mail submitted to both nodes arrives exactly once, each node delivering
  its own;
* ``mailnet queue list`` on node B shows node A's waiting item (with its
  node), and ``mailnet queue flush`` on B makes A deliver it;
* kill -9 of node A while it delivers: B takes A's items over once the
  lease has run out and finishes them; nothing accepted is lost, nothing A
  had recorded is sent again, and a message arrives twice only if it was
  in flight at the kill (the at-least-once window, docs/queue.md).
"""

from __future__ import annotations

import smtplib
import ssl

import pytest

from tests import pgnodes
from tests.harness import MailServer
from tests.pgnodes import pgConfig, queued
from tests.queue.e2e import DNSServer, NodeSink, Sink, tally, waitFor

pgServer = pgnodes.pgServer
pgDatabase = pgnodes.pgDatabase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    server = DNSServer(str(tmp_path_factory.mktemp("dns")))
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path, dns, pgServer, pgDatabase):
    """``cluster(mxPort)``: nodes A and B on one database, relaying to ``mxPort``."""
    made = []

    def make(port, lease=3, **relay):
        nodes = []
        for name in ("a", "b"):
            config = pgConfig(
                pgServer, pgDatabase,
                server={"hostname": f"node{name}.example.test"},
                postgres={"statement_timeout": 10},
                queue={"retry_initial": 60, "retry_max": 120, "delay_warning": 0, "lease": lease,
                       "claim_interval": 0.3},
                relay=dict({"mx_port": port, "connect_timeout": 3, "reply_timeout": 10}, **relay),
                dns={"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2})
            node = MailServer(tmp_path / f"node{name}", config=config)
            made.append(node)
            node.start()
            node.addUser("alice@example.test", "alice-pw")
            nodes.append(node)
        return nodes

    yield make
    for node in made:
        node.stop()


def message(n, to):
    return (f"From: alice@example.test\r\nTo: {to}\r\nSubject: shared {n}\r\nMessage-ID: <s{n}@example.test>\r\n"
            f"\r\nHello {n}.\r\n").encode()


def submit(node, items):
    """``[(n, rcpt)]`` over one authenticated submission session."""
    client = smtplib.SMTP("127.0.0.1", node.port("submission"), timeout=30)
    client.starttls(context=ssl._create_unverified_context())
    client.login("alice@example.test", "alice-pw")
    for n, rcpt in items:
        client.sendmail("alice@example.test", [rcpt], message(n, rcpt))
    client.quit()


def test_two_nodes_deliver_each_message_once_and_see_each_others_queue(cluster, pgServer, pgDatabase):
    sink = Sink(handler=NodeSink()).start()
    try:
        a, b = cluster(sink.port)
        submit(a, [(n, f"u{n}@ok.test") for n in range(8)])
        submit(b, [(n, f"u{n}@ok2.test") for n in range(8, 16)])
        sink.handler.wait(16, timeout=60)
        waitFor(lambda: queued(pgServer, pgDatabase) == [], timeout=30, what="empty shared queue")
        counts = tally(sink.handler.messages)
        assert sorted(counts) == sorted(f"<s{n}@example.test>" for n in range(16))
        assert all(len(helos) == 1 for helos in counts.values()), counts  # exactly once
        assert {counts[f"<s{n}@example.test>"][0] for n in range(8)} == {"nodea.example.test"}
        assert {counts[f"<s{n}@example.test>"][0] for n in range(8, 16)} == {"nodeb.example.test"}

        # A greylisted message waits on node A (retry in 60 s) ...
        submit(a, [(99, "late@grey.test")])
        waitFor(lambda: "1 recipient(s) waiting" in b.mailnet("queue", "list").stdout, timeout=30,
                what="A's item listed on B")
        out = b.mailnet("queue", "list").stdout
        assert "late@grey.test  delayed" in out and "[node nodea.example.test/" in out and "greylisted" in out
        # ... and a flush on B makes A try it now.
        assert "flushed: 1 recipient(s) due now" in b.mailnet("queue", "flush").stdout
        waitFor(lambda: queued(pgServer, pgDatabase) == [], timeout=30, what="flushed item delivered")
        assert tally(sink.handler.messages)["<s99@example.test>"] == ["nodea.example.test"]
        assert b.mailnet("queue", "list").stdout == "the queue is empty\n"
    finally:
        sink.stop()


def test_kill9_of_a_node_while_it_delivers_the_other_finishes_its_items_once(cluster, pgServer, pgDatabase):
    handler = NodeSink(slow=0.3)
    sink = Sink(handler=handler).start()
    try:
        a, b = cluster(sink.port, max_connections_per_destination=2)
        total = 16
        submit(a, [(n, f"u{n}@ok.test") for n in range(total)])
        handler.wait(4, timeout=60)
        a.kill()
        # What the database says at the crash: the rows A had not removed yet.
        left = set(queued(pgServer, pgDatabase))
        assert left  # the crash really was in the middle
        with pgServer.connect(pgDatabase) as conn:
            remaining = {bytes(r[0]).split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
                         for r in conn.execute("SELECT c.data FROM queue_chunks c WHERE c.n = 0").fetchall()}
        assert len(remaining) == len(left)
        handler.slow = 0
        b.waitForLog("taken over from node nodea.example.test/", timeout=30)
        waitFor(lambda: queued(pgServer, pgDatabase) == [], timeout=60, what="B finished A's items")
        counts = tally(handler.messages)
        everything = {f"<s{n}@example.test>" for n in range(total)}
        assert set(counts) == everything  # nothing accepted is lost
        done = everything - remaining  # removed by A before the crash: its record
        assert all(counts[m] == ["nodea.example.test"] for m in done), counts
        twice = {m for m, helos in counts.items() if len(helos) > 1}
        # A duplicate is only a message A was sending when it died (2 connections), sent again by B.
        assert len(twice) <= 2, counts
        assert all(counts[m] == ["nodea.example.test", "nodeb.example.test"] for m in twice), counts
        assert all(counts[m][-1] == "nodeb.example.test" for m in remaining), counts
    finally:
        sink.stop()


def test_database_restarted_under_load_nothing_accepted_is_lost(cluster, pgServer, pgDatabase):
    sink = Sink(handler=NodeSink()).start()
    try:
        a, b = cluster(sink.port)
        accepted, refused = [], []
        n = 0

        def send(node, count):
            nonlocal n
            for _ in range(count):
                n += 1
                try:
                    submit(node, [(n, f"r{n}@ok.test")])
                    accepted.append(f"<s{n}@example.test>")
                except smtplib.SMTPResponseException as e:
                    assert 400 <= e.smtp_code < 500, e  # a temporary answer, never a 5xx
                    refused.append(n)
                except (smtplib.SMTPServerDisconnected, ConnectionError) as e:
                    raise AssertionError(f"the node dropped the session: {e!r}")

        send(a, 3)
        send(b, 3)
        pgServer.stop("fast")
        send(a, 3)  # told to try again later while the database is away
        send(b, 3)
        pgServer.start()
        waitFor(lambda: _accepts(a), timeout=30, what="node A accepting again")
        accepted.append("<s-probe@example.test>")
        send(a, 3)
        send(b, 3)
        assert refused  # the outage was seen
        sink.handler.wait(len(accepted), timeout=60)
        waitFor(lambda: queued(pgServer, pgDatabase) == [], timeout=60, what="empty shared queue")
        counts = tally(sink.handler.messages)
        assert set(accepted) <= set(counts), (sorted(set(accepted) - set(counts)), refused)  # nothing accepted lost
        assert not {f"<s{r}@example.test>" for r in refused} & set(counts)
        assert all(len(helos) == 1 for helos in counts.values()), counts
    finally:
        sink.stop()


def _accepts(node):
    try:
        client = smtplib.SMTP("127.0.0.1", node.port("submission"), timeout=30)
        client.starttls(context=ssl._create_unverified_context())
        client.login("alice@example.test", "alice-pw")
        client.sendmail("alice@example.test", ["probe@ok.test"],
                        b"From: alice@example.test\r\nSubject: probe\r\nMessage-ID: <s-probe@example.test>\r\n\r\nx\r\n")
        client.quit()
        return True
    except smtplib.SMTPResponseException:
        return False
