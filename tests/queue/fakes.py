"""In-memory stand-ins for the queue's collaborators (DNS, SMTP sessions, the store)."""

import random

from twisted.internet import defer
from twisted.names import dns, error as dnserror

from mailnet.errors import DeliveryError
from mailnet.queue.client import Result


class FakeResolver:
    """
    A dictionary DNS: ``zone = {"example.test": {"MX": [(10, "mx.example.test")]},
    "mx.example.test": {"A": ["127.0.0.1"]}}``; a name missing from the zone
    is NXDOMAIN; a name in ``failing`` times out.
    """

    def __init__(self, zone, failing=()):
        self.zone = zone
        self.failing = set(failing)
        self.queries = []

    def _answer(self, name, kind, make):
        self.queries.append((name, kind))
        name = name.rstrip(".").lower()
        if name in self.failing:
            return defer.fail(dnserror.DNSQueryTimeoutError(name))
        if name not in self.zone:
            return defer.fail(dnserror.DNSNameError(name))
        records = [dns.RRHeader(name, getattr(dns, kind), dns.IN, 60, make(v)) for v in self.zone[name].get(kind, [])]
        return defer.succeed((records, [], []))

    def lookupMailExchange(self, name, timeout=None):
        return self._answer(name, "MX", lambda v: dns.Record_MX(v[0], v[1]))

    def lookupAddress(self, name, timeout=None):
        return self._answer(name, "A", lambda v: dns.Record_A(v))

    def lookupIPV6Address(self, name, timeout=None):
        return self._answer(name, "AAAA", lambda v: dns.Record_AAAA(v))


class FakeSession:
    """
    A remote SMTP session.  ``script(address) -> None | DeliveryError``
    decides each recipient; ``dsn`` says whether the peer offers DSN.
    """

    def __init__(self, connector, destination, host):
        self.connector = connector
        self.destination = destination
        self.host = host
        self.alive = True
        self.closed = defer.Deferred()
        self.delivered = []
        self.quits = 0

    def deliver(self, txn):
        self.delivered.append(txn)
        outcomes = {r.address: self.connector.script(r.address) for r in txn.recipients}
        with txn.open() as f:
            data = f.read()
        if self.connector.clock is not None:
            self.connector.times.append(self.connector.clock.seconds())
        self.connector.messages.append((self.destination, txn.sender, [r.address for r in txn.recipients], data, outcomes))
        result = Result(txn, outcomes, dsn=self.connector.dsn)
        if self.connector.slow:
            d = defer.Deferred()
            self.connector.clock.callLater(self.connector.slow, d.callback, result)
            return d
        return defer.succeed(result)

    def quit(self):
        self.quits += 1
        self.drop()
        return self.closed

    def drop(self):
        if self.alive:
            self.alive = False
            self.closed.callback(None)

    def abort(self):
        self.drop()


class FakeConnector:
    """Counts connections; ``refuse`` maps destinations to the DeliveryError of a failed connect."""

    def __init__(self, clock=None, script=None, dsn=True, slow=0):
        self.clock = clock
        self.script = script or (lambda address: None)
        self.dsn = dsn
        self.slow = slow
        self.refuse = {}
        self.sessions = []
        self.connects = []
        self.messages = []
        self.peak = 0
        self.peakPerDestination = 0
        self.times = []

    def connect(self, destination):
        self.connects.append(destination)
        if destination in self.refuse:
            return defer.fail(self.refuse[destination])
        session = FakeSession(self, destination, f"mx.{destination}[127.0.0.1]:25")
        self.sessions.append(session)
        alive = [s for s in self.sessions if s.alive]
        self.peak = max(self.peak, len(alive))
        perDest = sum(1 for s in alive if s.destination == destination)
        self.peakPerDestination = max(self.peakPerDestination, perDest)
        return defer.succeed(session)


def refused(host="mx.remote.test"):
    return DeliveryError(451, "4.4.1", f"connect to {host}[127.0.0.1]:25: connection refused", True)


class MemoryDelivery:
    def __init__(self, store):
        self.store = store
        self.users = []
        self.data = b""

    def addRecipient(self, username, folder="INBOX"):
        self.users.append(username)

    def write(self, data):
        self.data += data

    def commit(self, internalDate=None, flags=()):
        if self.store.failWith is not None:
            return defer.fail(self.store.failWith)
        for u in self.users:
            self.store.boxes.setdefault(u, []).append(self.data)
        return defer.succeed([(u, "INBOX", len(self.store.boxes[u])) for u in self.users])

    def abort(self):
        self.data = b""


class MemoryStore:
    """Just enough of IMailStore for the queue's local deliveries."""

    def __init__(self):
        self.boxes = {}
        self.failWith = None

    def newDelivery(self):
        return MemoryDelivery(self)

    def close(self):
        pass


def seeded():
    return random.Random(1)
