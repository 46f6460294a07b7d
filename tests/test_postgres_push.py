"""
JMAP push across real mailnet nodes on one PostgreSQL, and a lost LISTEN
connection (issue 18, docs/scaling.md "Push across nodes", "How it is
tested").  Each node in a network namespace of its own (tests/pgnodes.py),
IMAP IDLE polling off, so only the database's notification (or the resync
after a reconnect) can tell a node of another node's change.

* An EventSource (RFC 8620 s7.3, read as a plain ``text/event-stream``
  over a socket) on node B gets a StateChange naming Email and Mailbox
  after an SMTP delivery on node A, and Email after an IMAP STORE on A.
* PushSubscriptions (RFC 8620 s7.2) are shared: one made through node A
  is listed, verified and destroyed through node B; a delivery on either
  node is POSTed exactly once (by the node that made the change; the
  POSTs counted over a wait well past ``push_coalesce``); destroyed
  through B, a change on A is POSTed nothing; node A stopped, a delivery
  on B still reaches the receiver.
* Node B's listening connection ended with ``pg_terminate_backend``, an
  APPEND made on node A while it is down: B's IMAP IDLE gets ``EXISTS``,
  B's EventSource a StateChange once B listens again (late, never
  missed), and a PushSubscription made through B its POST (from A, which
  made the change).

Latencies are printed and recorded (``push_latency_s``), not asserted
beyond a generous bound.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import threading
import time

import pytest

from tests import pgnodes
from tests.http.pushreceiver import PushReceiver
from tests.pgnodes import ALICE, eventually, imap, pgConfig, smtp

pgServer = pgnodes.pgServer
pgDatabase = pgnodes.pgDatabase
pgNodes = pgnodes.pgNodes

pytestmark = [pytest.mark.slow, pytest.mark.nodes]

BOUND = 20  # seconds: "never", on a loaded 2-core machine


def message(subject):
    return (f"From: Bob <bob@elsewhere.test>\r\nTo: {ALICE[0]}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}@example.test>\r\n\r\nthe body of {subject}\r\n").encode()


def config(pgServer, pgDatabase):
    def node(i, hosts):
        return pgConfig(pgServer, pgDatabase, limits={"imap_idle_poll": 0}, auth={"allow_plaintext": True},
                        http={"push_ping_minimum": 1},
                        jmap={"push_allowed_prefixes": [f"http://{hosts.gateway}:"], "push_coalesce": 0.2})
    return node


def basic():
    return "Basic " + base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()


def api(node, name, **args):
    body = json.dumps({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                       "methodCalls": [[name, args, "0"]]}).encode()
    connection = http.client.HTTPConnection(node.host, node.port("http"), timeout=30)
    connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json", "Authorization": basic()})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    [[got, answer, _]] = data["methodResponses"]
    assert got == name, answer
    return answer


def accountId():
    from mailnet.jmap.core import accountIdFor

    return accountIdFor(ALICE[0])


def deliver(node, subject):
    """SMTP to ``node``; returns when the 250 to DATA was read (before QUIT)."""
    with smtp(node) as c:
        c.sendmail("bob@elsewhere.test", [ALICE[0]], message(subject))
        return time.monotonic()


class EventStream:
    """RFC 8620 s7.3: ``GET /jmap/eventsource/`` on a node; every ``state`` event with when it arrived."""

    def __init__(self, node):
        self.events = []  # (monotonic time, StateChange)
        self.sock = socket.create_connection((node.host, node.port("http")), timeout=60)
        self.sock.sendall(b"GET /jmap/eventsource/?types=*&closeafter=no&ping=0 HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: " + basic().encode() + b"\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head.lower(), head
        self.buffer = head.partition(b"\r\n\r\n")[2]
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            self._parse()
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            self.buffer += chunk

    def _parse(self):
        # Chunked or not, an event is "event: state" ... "data: {...}" up to a blank line.
        while True:
            m = re.search(rb"event: state\r?\n(?:[^\r\n]*\r?\n)*?data: ([^\r\n]*)\r?\n", self.buffer)
            if not m:
                return
            self.events.append((time.monotonic(), json.loads(m.group(1))))
            self.buffer = self.buffer[m.end():]

    def after(self, start, want):
        """The first StateChange since ``start`` whose types for the account include all of ``want``."""
        for when, change in list(self.events):
            types = change.get("changed", {}).get(accountId(), {})
            if when >= start and set(want) <= set(types):
                return when, change
        return None

    def wait(self, start, want, seconds=BOUND):
        eventually(lambda: self.after(start, want), seconds, f"a StateChange naming {sorted(want)}")
        return self.after(start, want)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def test_eventsource_on_node_b_hears_smtp_and_store_on_node_a(pgNodes, pgServer, pgDatabase, record_property):
    a, b = pgNodes(2, config(pgServer, pgDatabase))
    deliver(a, "first")  # the account exists, with a message to flag later
    stream = EventStream(b)
    writer = imap(a)
    try:
        time.sleep(0.5)  # the stream watches the account once its head is sent (and B's store has looked)
        start = time.monotonic()
        sent = deliver(a, "pushed across nodes")
        when, change = stream.wait(start, {"Email", "Mailbox"})
        assert change["@type"] == "StateChange"
        # The state pushed is this change's, the one node B answers too.
        assert change["changed"][accountId()]["Email"] == api(b, "Email/get", accountId=accountId(), ids=[])["state"]
        smtpLatency = when - sent
        writer.select_folder("INBOX")
        [uid] = writer.search(["SUBJECT", "first"])
        start = time.monotonic()
        writer.add_flags([uid], [b"\\Flagged"])
        stored = time.monotonic()
        when, change = stream.wait(start, {"Email"})
        storeLatency = when - stored
    finally:
        writer.logout()
        stream.close()
    # Measured from the 250 to DATA as the client read it: the push may come first (slightly negative).
    print(f"EventSource on B: {smtpLatency:.3f} s after the 250 to DATA on A, "
          f"{storeLatency:.3f} s after the STORE on A was answered")
    record_property("push_latency_s", {"smtp": round(smtpLatency, 3), "store": round(storeLatency, 3)})
    assert max(smtpLatency, storeLatency) < BOUND


def subscribe(node, receiver):
    """A PushSubscription for Email and Mailbox made and verified through ``node``."""
    made = api(node, "PushSubscription/set", create={"p": {"deviceClientId": "phone", "url": receiver.url(),
                                                           "types": ["Email", "Mailbox"]}})
    i = made["created"]["p"]["id"]
    eventually(lambda: receiver.received, BOUND, "the PushVerification")
    code = json.loads(receiver.received[0][2])["verificationCode"]
    assert api(node, "PushSubscription/set", update={i: {"verificationCode": code}})["updated"] == {i: None}


def stateChangesAfter(receiver, seen):
    return [json.loads(body) for _, _, body in receiver.received[seen:]
            if json.loads(body)["@type"] == "StateChange"]


def pushedOnce(receiver, seen, node, what, settle=3.0):
    """Exactly one StateChange POSTed since ``seen`` (waited for, then ``settle`` seconds more); returns it."""
    eventually(lambda: stateChangesAfter(receiver, seen), BOUND, f"a StateChange for {what}")
    time.sleep(settle)  # push_coalesce is 0.2 s: a second POST for the same change would have come by now
    changes = stateChangesAfter(receiver, seen)
    assert len(changes) == 1, (what, changes)
    change = changes[0]
    assert set(change["changed"][accountId()]) == {"Email", "Mailbox"}  # the types asked for
    assert change["changed"][accountId()]["Email"] == api(node, "Email/get", accountId=accountId(), ids=[])["state"]
    return change


def test_a_subscription_is_shared_by_the_nodes_and_each_change_pushed_once(pgNodes, pgServer, pgDatabase,
                                                                             record_property):
    a, b = pgNodes(2, config(pgServer, pgDatabase))
    receiver = PushReceiver(host=pgNodes.hosts.gateway)
    try:
        made = api(a, "PushSubscription/set", create={"p": {"deviceClientId": "phone", "url": receiver.url(),
                                                            "types": ["Email", "Mailbox"]}})
        i = made["created"]["p"]["id"]
        # Made through A: listed through B at once (the same document), without url and keys (s7.2.1).
        listed = api(b, "PushSubscription/get")["list"]
        assert [s["id"] for s in listed] == [i] and listed[0]["verificationCode"] is None
        # The creating node sends the verification, once.
        eventually(lambda: receiver.received, BOUND, "the PushVerification")
        time.sleep(1)
        assert len(receiver.received) == 1
        code = json.loads(receiver.received[0][2])["verificationCode"]
        # Verified through B; A hears of it (its NOTIFY) and pushes A's changes.
        assert api(b, "PushSubscription/set", update={i: {"verificationCode": code}})["updated"] == {i: None}
        assert api(a, "PushSubscription/get", ids=[i])["list"][0]["verificationCode"] == code
        seen = len(receiver.received)
        sent = deliver(b, "delivered on node b")
        eventually(lambda: stateChangesAfter(receiver, seen), BOUND, "a StateChange for the delivery on B")
        latency = time.monotonic() - sent
        pushedOnce(receiver, seen, b, "the delivery on B")
        seen = len(receiver.received)
        deliver(a, "delivered on node a")
        pushedOnce(receiver, seen, a, "the delivery on A")
        print(f"PushSubscription made on A, verified on B: one POST per delivery on either node; the POST for "
              f"B's seen {latency:.3f} s after its 250 to DATA (push_coalesce 0.2 s)")
        record_property("push_latency_s", round(latency, 3))
        # Destroyed through B: A forgets it too, and a change on A is POSTed nothing.
        assert api(b, "PushSubscription/set", destroy=[i])["destroyed"] == [i]
        assert api(a, "PushSubscription/get")["list"] == []
        seen = len(receiver.received)
        time.sleep(1)  # A's listener hears of the destroy
        deliver(a, "after the destroy")
        time.sleep(3)
        assert receiver.received[seen:] == []
    finally:
        receiver.stop()


def test_node_a_stopped_a_change_on_node_b_still_reaches_its_subscription(pgNodes, pgServer, pgDatabase):
    a, b = pgNodes(2, config(pgServer, pgDatabase))
    receiver = PushReceiver(host=pgNodes.hosts.gateway)
    try:
        subscribe(a, receiver)  # made and verified through A
        time.sleep(1)  # B hears of the verification
        a.stop()
        seen = len(receiver.received)
        deliver(b, "delivered on node b while node a is down")
        pushedOnce(receiver, seen, b, "the delivery on B, node A down")
    finally:
        receiver.stop()


def listenName(node):
    """The application_name of the node's listening connection (the node logs it at start)."""
    m = re.search(r"change notifications on (mailnet-[0-9a-f]+-listen)", node.log())
    assert m, "the node did not log its connection names"
    return m.group(1)


def listenBackend(pgServer, dbname, name):
    """``(pid, backend_start)`` of the connection named ``name``, or None."""
    with pgServer.connect(dbname) as conn:
        return conn.execute("SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s",
                            (name,)).fetchone()


def dbNow(pgServer, dbname):
    with pgServer.connect(dbname) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def test_a_lost_listen_connection_resyncs_idle_and_eventsource(pgNodes, pgServer, pgDatabase, record_property):
    a, b = pgNodes(2, config(pgServer, pgDatabase))
    deliver(a, "before")
    name = listenName(b)
    eventually(lambda: listenBackend(pgServer, pgDatabase, name), BOUND, "node B listening")
    receiver = PushReceiver(host=pgNodes.hosts.gateway)
    subscribe(b, receiver)
    watcher = imap(b)
    watcher.select_folder("INBOX")
    watcher.idle()
    stream = EventStream(b)
    writer = imap(a)
    try:
        time.sleep(0.5)  # the stream watches the account
        # End node B's listening connection (only B's: the name is its own).
        pid, _ = listenBackend(pgServer, pgDatabase, name)
        with pgServer.connect(pgDatabase) as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        eventually(lambda: listenBackend(pgServer, pgDatabase, name) is None, BOUND, "B's LISTEN connection gone")
        start = time.monotonic()
        pushed = len(receiver.received)
        writer.append("INBOX", message("made while node B was not listening"))
        appended = time.monotonic()
        committed = dbNow(pgServer, pgDatabase)
        # The precondition: B was not listening when the APPEND committed (its
        # new connection, if any, was opened after), so its NOTIFY was lost to B.
        again = listenBackend(pgServer, pgDatabase, name)
        assert again is None or again[1] > committed, "node B listened again before the APPEND was answered"
        seen = []
        while time.monotonic() - start < BOUND and not any(r[1:2] == (b"EXISTS",) for r in seen):
            seen += watcher.idle_check(timeout=0.2)
        idleAt = time.monotonic()
        assert any(r[1:2] == (b"EXISTS",) for r in seen), seen
        when, change = stream.wait(start, {"Email", "Mailbox"})
        state = api(b, "Email/get", accountId=accountId(), ids=[])["state"]
        assert change["changed"][accountId()]["Email"] == state
        # The PushSubscription made through B is POSTed by A, which made the change (B only heard of it).
        eventually(lambda: any(c["changed"][accountId()].get("Email") == state
                               for c in stateChangesAfter(receiver, pushed)), BOUND, "a StateChange POSTed by A")
        postedAt = time.monotonic()
        assert listenBackend(pgServer, pgDatabase, name) is not None  # B listens again
        assert "change notifications lost" in b.log() and "listening again" in b.log()
    finally:
        try:
            watcher.idle_done()
            watcher.logout()
        finally:
            writer.logout()
            stream.close()
            receiver.stop()
    print(f"after the lost LISTEN: IDLE on B {idleAt - appended:.3f} s, EventSource on B {when - appended:.3f} s, "
          f"the push POST seen by {postedAt - appended:.3f} s after the APPEND on A was answered "
          "(the listener retries after 2 s)")
    record_property("resync_latency_s", {"idle": round(idleAt - appended, 3), "eventsource": round(when - appended, 3),
                                         "push_post_by": round(postedAt - appended, 3)})
