"""In-process POP3 sessions: the real server protocol on a StringTransport,
a MemoryStore, a task.Clock for every timer, and a synchronous checker."""

from __future__ import annotations

import base64
import weakref

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mailnet import config
from mailnet.auth import normalize
from mailnet.pop3 import server
from mailnet.service import MailContext
from mailnet.store.memory import MemoryStore

USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


@implementer(ICredentialsChecker)
class Checker:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, users):
        self.users = users

    def requestAvatarId(self, creds):
        name = normalize(creds.username.decode() if isinstance(creds.username, bytes) else creds.username)
        password = creds.password.decode() if isinstance(creds.password, bytes) else creds.password
        if self.users.get(name) == password:
            return defer.succeed(name)
        return defer.fail(error.UnauthorizedLogin())


class Transport(StringTransport):
    """A StringTransport that records STLS and can push back like TCP."""

    def __init__(self, pauseAbove=None):
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.tls = None
        self.pauseAbove = pauseAbove
        self.highWater = 0
        self.lost = False

    def startTLS(self, options):
        self.tls = options

    def write(self, data):
        super().write(data)
        size = len(self.io.getvalue())
        self.highWater = max(self.highWater, size)
        if self.pauseAbove is not None and self.producer is not None and self.streaming and size > self.pauseAbove:
            self.producer.pauseProducing()

    def drain(self):
        """The network took everything: empty the buffer, resume the producer."""
        data = self.value()
        self.clear()
        if self.producer is not None and self.streaming:
            self.producer.resumeProducing()
        return data


def makeContext(tmp_path, clock=None, store=None, **sections):
    raw = {"server": {"data_dir": str(tmp_path), "hostname": "mx.example.test"},
           "auth": {"failure_delay": 1.0}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    conf = config.fromDict(raw)
    return MailContext(conf, reactor=clock or task.Clock(), store=store or MemoryStore(), checkers=[Checker(USERS)])


def deliver(store, user, body: bytes, flags=()):
    d = store.newDelivery()
    d.addRecipient(user)
    d.write(body)
    box = []
    d.commit(flags=flags).addBoth(box.append)
    return box[0][0][2]


_services: "weakref.WeakKeyDictionary[MailContext, server.POP3Service]" = weakref.WeakKeyDictionary()


def serviceFor(context) -> server.POP3Service:
    """One POP3Service per context, as the server has (its clients share the maildrop locks)."""
    if context not in _services:
        _services[context] = server.makeService(context)
    return _services[context]


class Client:
    """One connection to an in-process server."""

    def __init__(self, context, listener="pop3s", transport=None):
        self.context = context
        self.factory = serviceFor(context).factory(listener)
        self.proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = transport or Transport()
        self.proto.makeConnection(self.transport)
        self.greeting = self.take()

    def take(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data: bytes):
        self.proto.dataReceived(data)
        return self.take()

    def cmd(self, line: str):
        return self.send(line.encode() + b"\r\n")

    def login(self, user="alice@example.test", password=None):
        password = password or USERS[user]
        out = self.send(f"USER {user}\r\nPASS {password}\r\n".encode())
        return out

    def plain(self, user, password):
        return self.cmd("AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode())

    def drop(self):
        """The client vanishes."""
        if not self.transport.lost:
            self.transport.lost = True
            self.proto.connectionLost(None)

    @property
    def closed(self):
        return self.transport.disconnecting
