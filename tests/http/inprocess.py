"""
The http service in-process: a real twisted.web Site over StringTransport,
a task.Clock, an in-memory store and plain passwords (no argon2), so the
tests drive every path without sockets or threads.
"""

import base64
import json
import types

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mailnet import auth, config
from mailnet.http.server import HTTPService
from mailnet.jmap.push import MemoryPushSource
from mailnet.login import AuthThrottle, LoginSequence
from mailnet.store.memory import MemoryStore

USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


@implementer(ICredentialsChecker)
class Checker:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self):
        self.checks = 0

    def requestAvatarId(self, creds):
        self.checks += 1
        if USERS.get(creds.username) == creds.password:
            return defer.succeed(creds.username)
        return defer.fail(error.UnauthorizedLogin())


def basic(user="alice@example.test", password=None):
    password = USERS.get(user) if password is None else password
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


class Response:
    def __init__(self, raw: bytes):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split()[1]) if lines and lines[0] else 0
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.setdefault(name.strip().lower().decode(), []).append(value.strip().decode("latin-1"))
        if self.headers.get("transfer-encoding") == ["chunked"]:
            self.body = dechunk(self.body)

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


def dechunk(data):
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2:]
    return out


class Transport(StringTransport):
    """StringTransport that, like a TCP transport, lets a producer be unregistered twice."""

    def unregisterProducer(self):
        if self.producer is not None:
            super().unregisterProducer()


class HTTP:
    """One service; :meth:`connect` gives a client connection over StringTransport."""

    def __init__(self, tmp_path, http=None, authConfig=None, limits=None, storePush=False):
        self.clock = task.Clock()
        raw = {"server": {"data_dir": str(tmp_path)}, "http": http or {}, "auth": authConfig or {}}
        if limits:
            raw["limits"] = limits
        self.config = config.fromDict(raw)
        self.checker = Checker()
        self.store = MemoryStore()
        portal = auth.makePortal(self.store, [self.checker])
        throttle = AuthThrottle(self.clock, baseDelay=0)
        context = types.SimpleNamespace(config=self.config, reactor=self.clock, store=self.store,
                                        login=LoginSequence(portal, throttle, self.clock))
        # The push source: one the tests publish into, or (storePush) the store's account changes.
        self.service = HTTPService(context, push=None if storePush else MemoryPushSource())
        # The upload store's file work at once, not in a thread.
        self.service.uploads.runInThread = lambda f, *args: defer.maybeDeferred(f, *args)
        self.site = self.service.site

    def connect(self, host="127.0.0.1"):
        address = IPv4Address("TCP", host, 40000)
        protocol = self.site.buildProtocol(address)
        transport = Transport(peerAddress=address, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        protocol.makeConnection(transport)
        return Connection(protocol, transport)

    def request(self, method, path, body=b"", headers=None, host="127.0.0.1", auth=True):
        connection = self.connect(host)
        connection.send(method, path, body, headers, auth)
        return connection.response()

    def accountId(self, user="alice@example.test"):
        from mailnet.jmap.core import accountIdFor
        return accountIdFor(user)

    def api(self, calls, using=("urn:ietf:params:jmap:core",), **kw):
        body = json.dumps({"using": list(using), "methodCalls": calls}).encode()
        return self.request(b"POST", b"/jmap/api/", body, {b"content-type": b"application/json"}, **kw)


class Connection:
    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport

    def send(self, method, path, body=b"", headers=None, auth=True):
        headers = dict(headers or {})
        headers.setdefault(b"host", b"127.0.0.1:8080")
        if auth is True:
            headers.setdefault(b"authorization", basic())
        elif auth:
            headers[b"authorization"] = auth
        if body or method == b"POST":
            headers.setdefault(b"content-length", b"%d" % len(body))
        head = method + b" " + path + b" HTTP/1.1\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in headers.items())
        self.protocol.dataReceived(head + b"\r\n" + body)

    def raw(self, data):
        self.protocol.dataReceived(data)

    def response(self):
        value = self.transport.value()
        self.transport.clear()
        return Response(value)

    @property
    def closed(self):
        return self.transport.disconnecting

    def settle(self):
        """What the reactor does after loseConnection: tell the protocol the connection is gone."""
        if self.transport.disconnecting and not getattr(self, "lost", False):
            self.lost = True
            from twisted.internet.error import ConnectionDone
            from twisted.python import failure
            self.protocol.connectionLost(failure.Failure(ConnectionDone()))
