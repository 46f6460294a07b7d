"""
JMAP push across real mailnet nodes on one PostgreSQL, and a lost LISTEN
connection (issue 18, docs/scaling.md "Push across nodes", "How it is
tested").  Each node in a network namespace of its own (tests/pgnodes.py),
IMAP IDLE polling off, so only the database's notification (or the resync
after a reconnect) can tell a node of another node's change.

* An EventSource (RFC 8620 s7.3, read as a plain ``text/event-stream``
  over a socket) on node B gets a StateChange naming Email and Mailbox
  after an SMTP delivery on node A, and Email after an IMAP STORE on A.
* A PushSubscription (RFC 8620 s7.2) created through node A is POSTed a
  StateChange for an SMTP delivery made on node B: the subscription stays
  on the node it was made on, and that node hears B's change by
  LISTEN/NOTIFY.
* Node B's listening connection ended with ``pg_terminate_backend``, an
  APPEND made on node A while it is down: B's IMAP IDLE gets ``EXISTS``,
  B's EventSource a StateChange and a PushSubscription made through B a
  POST once B listens again (late, never missed).

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


def test_push_subscription_made_on_node_a_hears_a_change_on_node_b(pgNodes, pgServer, pgDatabase, record_property):
    a, b = pgNodes(2, config(pgServer, pgDatabase))
    receiver = PushReceiver(host=pgNodes.hosts.gateway)
    try:
        subscribe(a, receiver)
        seen = len(receiver.received)
        sent = deliver(b, "delivered on node b")
        eventually(lambda: len(receiver.received) > seen, BOUND, "a StateChange POSTed by node A")
        latency = time.monotonic() - sent
        change = json.loads(receiver.received[seen][2])
        assert change["@type"] == "StateChange"
        assert set(change["changed"][accountId()]) == {"Email", "Mailbox"}  # the types asked for
        assert change["changed"][accountId()]["Email"] == api(b, "Email/get", accountId=accountId(), ids=[])["state"]
        print(f"PushSubscription on A: POST received {latency:.3f} s after the 250 to DATA on B "
              "(push_coalesce 0.2 s)")
        record_property("push_latency_s", round(latency, 3))
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
        # B's PushSubscription is told too (the same account listeners).
        eventually(lambda: any(c["changed"][accountId()].get("Email") == state
                               for c in stateChangesAfter(receiver, pushed)), BOUND, "a StateChange POSTed by B")
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
          f"B's push POST seen by {postedAt - appended:.3f} s after the APPEND on A was answered "
          "(the listener retries after 2 s)")
    record_property("resync_latency_s", {"idle": round(idleAt - appended, 3), "eventsource": round(when - appended, 3),
                                         "push_post_by": round(postedAt - appended, 3)})
