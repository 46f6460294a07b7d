"""
In-process helpers: an IMAPSession wired to the memory store, a cred portal,
a fake output object that runs the session's effects (the real runner,
mailnet.imap.runner) and a task.Clock, driven by feeding bytes.
"""

from __future__ import annotations

import re

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from zope.interface import implementer

from mailnet.auth import makePortal
from mailnet.login import AuthThrottle
from mailnet.imap.runner import IMAPRunner
from mailnet.imap.session import IMAPSession
from mailnet.imap.shared import IMAPSettings, Shared
from mailnet.store.memory import MemoryStore

USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


@implementer(ICredentialsChecker)
class Checker:
    """Plain passwords in a dict; usernames normalised like mailnet.auth.UserDB."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, users):
        self.users = dict(users)

    def requestAvatarId(self, creds):
        name = creds.username.lower() if isinstance(creds.username, str) else creds.username.decode().lower()
        password = creds.password if isinstance(creds.password, str) else creds.password.decode()
        if self.users.get(name) == password:
            return defer.succeed(name)
        return defer.fail(error.UnauthorizedLogin())


class FakeOut(IMAPRunner):
    """The session's output object and effect runner, recording everything."""

    def __init__(self, secure=False, peer="127.0.0.1", shared=None):
        self.initIMAPRunner()
        self.shared = shared
        self.session = None
        self.data = bytearray()
        self.secure = secure
        self.peer = peer
        self.closed = False
        self.tlsStarted = False
        self.readingPaused = False
        self.paused = False
        self._waiters = []

    def write(self, data):
        assert not self.closed, "write after close"
        self.data += data

    def writeSequence(self, pieces):
        for piece in pieces:
            self.write(piece)

    def drained(self):
        if not self.paused:
            return None
        d = defer.Deferred()
        self._waiters.append(d)
        return d

    def resume(self):
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def startTLS(self):
        self.tlsStarted = True
        self.secure = True

    def close(self):
        self.closed = True

    def pauseReading(self):
        self.readingPaused = True

    def resumeReading(self):
        self.readingPaused = False


class World:
    """A store, a portal and a clock shared by several in-process sessions."""

    def __init__(self, store=None, **settings):
        self.store = store or MemoryStore()
        checker = Checker(USERS)
        self.clock = task.Clock()
        self.throttle = AuthThrottle(self.clock, baseDelay=0)
        options = {"allowPlaintext": True, "idlePoll": 0}
        options.update(settings)
        self.shared = Shared(IMAPSettings(None, **options), makePortal(self.store, [checker]), self.throttle, self.clock,
                             inThread=lambda f, *args: defer.maybeDeferred(f, *args))

    def client(self, secure=False, login=None):
        c = Client(self, secure)
        if login:
            c.login(login)
        return c

    def account(self, user="alice@example.test"):
        results = []
        self.store.getAccount(user).addBoth(results.append)
        return results[0]

    def deliver(self, message, user="alice@example.test", folder="INBOX", flags=()):
        d = self.store.newDelivery()
        d.addRecipient(user, folder)
        d.write(message)
        results = []
        d.commit(flags=flags).addBoth(results.append)
        return results[0]


class Client:
    """Feed a command, get what the session wrote since the last call."""

    def __init__(self, world, secure=False):
        self.world = world
        self.out = FakeOut(secure, shared=world.shared)
        self.session = self.out.session = IMAPSession(world.shared, self.out)
        self.out.runEffects(self.session.start())
        self.greeting = self.take()
        self.n = 0

    def take(self) -> bytes:
        data = bytes(self.out.data)
        self.out.data.clear()
        return data

    def push(self, data: bytes):
        """Feed bytes, keeping what the session writes for take()."""
        self.out.runEffects(self.session.feed(data))

    def feed(self, data: bytes) -> bytes:
        self.push(data)
        return self.take()

    def cmd(self, text, tag=None) -> bytes:
        """Send one command (str or bytes, without tag) and return the whole reply."""
        self.n += 1
        tag = tag or "t%d" % self.n
        if isinstance(text, str):
            text = text.encode()
        return self.feed(tag.encode() + b" " + text + b"\r\n")

    def ok(self, text) -> bytes:
        reply = self.cmd(text)
        last = reply.rstrip(b"\r\n").split(b"\r\n")[-1]
        assert re.match(rb"t\d+ OK", last), reply
        return reply

    def login(self, user="alice@example.test"):
        return self.ok("LOGIN %s %s" % (user, USERS[user]))


def lines(reply: bytes):
    return reply.rstrip(b"\r\n").split(b"\r\n") if reply else []


def message(subject="hello", body="Hello world\r\n", sender="bob@example.test", to="alice@example.test", extra=""):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@example.test>\r\n%s\r\n%s"
            % (sender, to, subject, abs(hash(subject)), extra, body)).encode()
