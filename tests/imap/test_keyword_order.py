"""
RFC 3501 s7.2.6: a keyword that is new to the mailbox is announced in
``* FLAGS`` (and ``* OK [PERMANENTFLAGS ...]``) before any ``* FETCH`` that
shows it: after this session's STORE, after another session's STORE (seen
at any command, FETCH included), after an APPEND or COPY with a new keyword
(issue 12, defect 10).  In process (memory store), and once against the
real server over a raw socket.
"""

import re
import socket

import pytest

from tests.imap.helpers import World, message

_FLAGS = re.compile(rb"^\* FLAGS \(([^)]*)\)")
_PERMANENT = re.compile(rb"^\* OK \[PERMANENTFLAGS \(([^)]*)\)\]")
_FETCH_FLAGS = re.compile(rb"^\* \d+ FETCH \(.*FLAGS \(([^)]*)\)")


class Order:
    """What one client has been told: keywords in FLAGS and in PERMANENTFLAGS."""

    def __init__(self):
        self.flags = set()
        self.permanent = set()

    def check(self, reply):
        """Feed a reply in order; complain about a FETCH showing a keyword not announced before it."""
        for line in reply.split(b"\r\n"):
            m = _FLAGS.match(line)
            if m:
                self.flags = set(m.group(1).split())
                continue
            m = _PERMANENT.match(line)
            if m:
                self.permanent = set(m.group(1).split())
                continue
            m = _FETCH_FLAGS.match(line)
            if m:
                for flag in m.group(1).split():
                    if flag.startswith(b"\\"):
                        continue
                    assert flag in self.flags, "FETCH shows %r before FLAGS:\n%s" % (flag, reply.decode())
                    assert flag in self.permanent, "FETCH shows %r before PERMANENTFLAGS:\n%s" % (flag, reply.decode())
        return reply


@pytest.fixture
def world():
    w = World()
    w.deliver(message("one"))
    w.deliver(message("two"))
    return w


def selected(world, mailbox="INBOX"):
    c = world.client(login="alice@example.test")
    c.order = Order()
    c.order.check(c.ok("SELECT " + mailbox))
    return c


def test_store_of_a_new_keyword_sends_flags_before_its_fetch(world):
    a = selected(world)
    reply = a.order.check(a.ok("STORE 1 +FLAGS ($Fresh)"))
    assert b"$Fresh" in reply and b"* 1 FETCH" in reply
    reply = a.order.check(a.ok("UID STORE 2 +FLAGS ($Other)"))
    assert b"* 2 FETCH (UID 2 FLAGS (" in reply and b"$Other))" in reply
    # Once announced, not again.
    assert b"* FLAGS" not in a.order.check(a.ok("STORE 1:2 +FLAGS ($Fresh)"))


def test_another_sessions_keyword_is_announced_before_a_fetch_shows_it(world):
    a, b = selected(world), selected(world)
    b.order.check(b.ok("STORE 1 +FLAGS ($FromB)"))
    reply = a.order.check(a.ok("FETCH 1:2 (FLAGS)"))
    assert b"$FromB" in reply
    b.order.check(b.ok("STORE 2 +FLAGS ($Again)"))
    reply = a.order.check(a.ok("STORE 2 +FLAGS (\\Seen)"))
    assert b"$Again" in reply
    b.order.check(b.ok("STORE 1 +FLAGS ($Third)"))
    a.order.check(a.ok("FETCH 1 (BODY.PEEK[HEADER] FLAGS)"))
    b.order.check(b.ok("STORE 1 +FLAGS ($Fourth)"))
    a.order.check(a.ok("SEARCH KEYWORD $Fourth"))
    a.order.check(a.ok("NOOP"))


def test_append_and_copy_with_a_new_keyword(world):
    a, b = selected(world), selected(world)
    literal = message("three")
    reply = a.order.check(a.feed(b"t9 APPEND INBOX ($Appended) {%d+}\r\n" % len(literal) + literal + b"\r\n"))
    assert b"t9 OK" in reply and b"$Appended" in reply
    a.order.check(a.ok("FETCH 1:* (FLAGS)"))
    b.order.check(b.ok("FETCH 1:* (FLAGS)"))
    b.order.check(b.ok("UID FETCH 1:* (FLAGS)"))
    # COPY from another mailbox brings a keyword INBOX has not seen.
    world.deliver(message("four"), folder="Archive", flags=["$Copied"])
    c = selected(world, "Archive")
    c.ok("COPY 1 INBOX")
    assert b"$Copied" in a.order.check(a.ok("UID FETCH 1:* (FLAGS)"))
    assert b"$Copied" in b.order.check(b.ok("NOOP"))
    b.order.check(b.ok("FETCH 1:* (FLAGS)"))


# The real server


class Raw:
    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=30)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.n = 0
        self.order = Order()

    def cmd(self, text):
        self.n += 1
        tag = b"r%d" % self.n
        self.sock.sendall(tag + b" " + text + b"\r\n")
        out = []
        while True:
            line = self.f.readline()
            assert line, "connection closed"
            out.append(line)
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), b"".join(out)
                return self.order.check(b"".join(out))


@pytest.mark.slow
def test_real_server_flags_before_fetch(imap_server):
    a, b = Raw(imap_server), Raw(imap_server)
    user = b"bob@example.test bob-pw"
    literal = message("real")
    for c in (a, b):
        c.cmd(b"LOGIN " + user)
    a.cmd(b"CREATE KeywordOrder")
    a.cmd(b"APPEND KeywordOrder {%d+}\r\n" % len(literal) + literal)
    for c in (a, b):
        c.cmd(b"SELECT KeywordOrder")
    assert b"$RealOne" in a.cmd(b"STORE 1 +FLAGS ($RealOne)")
    assert b"$RealOne" in b.cmd(b"FETCH 1 (FLAGS)")
    assert b"$RealTwo" in a.cmd(b"APPEND KeywordOrder ($RealTwo) {%d+}\r\n" % len(literal) + literal)
    assert b"$RealTwo" in b.cmd(b"NOOP")
    b.cmd(b"FETCH 1:* (FLAGS)")
    for c in (a, b):
        c.cmd(b"LOGOUT")
