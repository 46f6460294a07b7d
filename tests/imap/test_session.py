"""
The session state machine, in process: an IMAPSession on the memory store, fed
bytes, with a fake output object and a task.Clock.  Here: greeting,
capabilities, authentication and its limits, autologout; pipelining with
asynchronous store calls, flow control, long commands that let other
sessions in; a defect in one command's grammar.  The rest of the session is
in test_session_updates.py (between sessions, IDLE), _commands.py (FETCH,
STORE, COPY/MOVE, EXPUNGE, APPEND, SEARCH, CONDSTORE/QRESYNC) and
_mailboxes.py (names, LIST, deleted mailboxes).
"""

import base64
import re

from twisted.internet import defer

from mailnet.store.memory import MemoryStore
from tests.imap.helpers import World, lines, message
from tests.imap.session_helpers import selected, tagged
from tests.imap.session_helpers import world  # noqa: F401 (a fixture)


# Greeting, capabilities, authentication


def test_greeting_and_capabilities_before_tls():
    w = World(allowPlaintext=False)
    c = w.client()
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
    caps = c.cmd("CAPABILITY")
    assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps
    assert b"UIDPLUS" not in caps  # only after login
    reply = c.cmd("LOGIN alice@example.test alice-pw")
    assert b"NO [PRIVACYREQUIRED]" in reply
    reply = c.cmd("AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-pw").decode())
    assert b"NO [PRIVACYREQUIRED]" in reply


def test_starttls_discards_pipelined_commands():
    """RFC 3207 s4.2 / RFC 9051 s6.2.1: bytes sent with STARTTLS, before the handshake, are never run."""
    w = World(allowPlaintext=False)
    c = w.client()
    reply = c.feed(b"a STARTTLS\r\nb LOGIN alice@example.test alice-pw\r\nc CREATE Injected\r\n")
    assert reply == b"a OK Begin TLS negotiation now\r\n"
    assert c.out.tlsStarted
    assert c.session.state == "not authenticated"
    # Over TLS, login works and the injected CREATE never happened.
    caps = c.cmd("CAPABILITY")
    assert b"AUTH=PLAIN" in caps and b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps
    c.login()
    assert b"Injected" not in c.cmd('LIST "" *')
    assert b"BAD" in c.cmd("STARTTLS")


def test_login_and_authenticate_plain(world):
    c = world.client()
    reply = c.cmd("LOGIN alice@example.test alice-pw")
    assert re.search(rb"t1 OK \[CAPABILITY [^\]]*UIDPLUS[^\]]*\] Logged in", reply)
    # SASL-IR (RFC 4959)
    d = world.client()
    ir = base64.b64encode(b"\0bob@example.test\0bob-pw").decode()
    assert b"OK" in tagged(d.cmd("AUTHENTICATE PLAIN " + ir))
    # Without initial response: empty challenge, then the response line.
    e = world.client()
    assert e.cmd("AUTHENTICATE PLAIN") == b"+ \r\n"
    reply = e.feed(base64.b64encode(b"\0bob@example.test\0bob-pw") + b"\r\n")
    assert b"t1 OK" in reply
    # Cancel
    f = world.client()
    f.cmd("AUTHENTICATE PLAIN")
    assert b"t1 BAD" in f.feed(b"*\r\n")
    assert b"OK" in tagged(f.cmd("NOOP"))
    assert b"NO [CANNOT]" in f.cmd("AUTHENTICATE CRAM-MD5")


def test_failed_logins_are_throttled_then_disconnected():
    w = World(authFailures=3)
    w.throttle.baseDelay = 2.0
    c = w.client()
    reply = c.cmd("LOGIN alice@example.test wrong")
    assert reply == b""  # waits for the throttle
    w.clock.advance(2.0)
    assert b"t1 NO [AUTHENTICATIONFAILED]" in c.take()
    c.cmd("LOGIN alice@example.test wrong")
    w.clock.advance(10)
    c.take()
    c.cmd("LOGIN nobody@example.test x")
    w.clock.advance(10)
    reply = c.take()
    assert b"NO [AUTHENTICATIONFAILED]" in reply and b"* BYE" in reply
    assert c.out.closed


def test_connections_per_user_limit():
    w = World(connectionsPerUser=2)
    a, b, c = w.client(), w.client(), w.client()
    a.login()
    b.login()
    assert b"NO [UNAVAILABLE]" in c.cmd("LOGIN alice@example.test alice-pw")
    a.session.connectionLost()
    c.login()


def test_commands_in_the_wrong_state(world):
    c = world.client()
    assert b"BAD Command SELECT needs authentication" in c.cmd("SELECT INBOX")
    c.login()
    assert b"BAD Command FETCH needs a selected mailbox" in c.cmd("FETCH 1 FLAGS")
    assert b"BAD" in c.cmd("LOGIN alice@example.test alice-pw")


def test_bad_input_gets_clear_answers_and_session_survives(world):
    c = world.client(login="alice@example.test")
    assert b"t2 BAD Unknown command FROBNICATE" in c.cmd("FROBNICATE")
    assert b"BAD Error in IMAP command FETCH" in c.cmd("FETCH one FLAGS")
    assert c.feed(b"\r\n").startswith(b"* BAD")
    assert b"* BAD" in c.feed(b"+++ NOOP\r\n")
    assert b"OK" in tagged(c.cmd("NOOP"))


def test_line_and_literal_limits_in_session():
    w = World(maxLine=1000, maxLiteral=100)
    c = w.client(login="alice@example.test")
    assert b"t2 BAD [TOOBIG] Command line too long" in c.cmd("NOOP " + "x" * 2000)
    assert b"t3 BAD [TOOBIG] Literal too big" in c.cmd("APPEND INBOX {500}")
    assert b"OK" in tagged(c.cmd("NOOP"))


def test_autologout():
    w = World(idleTimeout=1800)
    c = w.client(login="alice@example.test")
    w.clock.advance(1799)
    c.cmd("NOOP")
    w.clock.advance(1799)
    assert not c.out.closed
    w.clock.advance(2)
    assert b"* BYE Autologout" in c.take() and c.out.closed


def test_literals_before_login_are_small(world):
    c = world.client()
    assert b"BAD [TOOBIG]" in c.cmd("LOGIN {100000}")
    c.login()
    reply = c.cmd("CREATE {20000}")
    assert reply.startswith(b"+ ")


def test_autologout_waits_for_a_running_command():
    w = World(idleTimeout=1800)
    w.deliver(b"Subject: big\r\n\r\n" + b"y" * (2 * 1024 * 1024))
    c = selected(w)
    c.out.paused = True
    c.cmd("FETCH 1 BODY.PEEK[]")  # the client does not read
    w.clock.advance(1801)
    assert not c.out.closed
    c.out.resume()
    assert c.take().endswith(b"OK FETCH completed\r\n")
    w.clock.advance(1801)
    assert c.out.closed


# Pipelining with asynchronous work


class SlowStore(MemoryStore):
    """The memory store, but every openFolder waits until released."""

    def __init__(self):
        super().__init__()
        self.waiting = []

    def getAccount(self, username, create=True):
        d = super().getAccount(username, create)
        store = self

        def wrap(account):
            real = account.openFolder

            def openFolder(name):
                gate = defer.Deferred()
                store.waiting.append(gate)
                return gate.addCallback(lambda _: real(name))

            account.openFolder = openFolder
            return account

        return d.addCallback(wrap)

    def release(self):
        waiting, self.waiting = self.waiting, []
        for gate in waiting:
            gate.callback(None)


def test_pipelined_commands_answered_in_order_while_one_waits():
    store = SlowStore()
    w = World(store=store)
    c = w.client(login="alice@example.test")
    reply = c.feed(b"a STATUS INBOX (MESSAGES)\r\nb NOOP\r\nc CAPABILITY\r\n")
    assert reply == b""  # STATUS is waiting for the store; nothing else ran
    store.release()
    reply = c.take()
    order = [l.split(b" ")[0] for l in lines(reply) if not l.startswith(b"*")]
    assert order == [b"a", b"b", b"c"]
    assert reply.index(b"* STATUS") < reply.index(b"a OK")


def test_reading_pauses_while_a_command_waits():
    store = SlowStore()
    w = World(store=store, maxLine=1000)
    c = w.client(login="alice@example.test")
    c.feed(b"a STATUS INBOX (MESSAGES)\r\n")
    c.feed(b"b NOOP\r\n" * 20000)
    assert c.out.readingPaused
    store.release()
    assert not c.out.readingPaused
    assert c.take().count(b" OK NOOP") == 20000


def test_search_batches_are_bounded_in_bytes(monkeypatch):
    """Messages already in memory are handed to the matcher at most ~SEARCH_BATCH_BYTES at a time."""
    from mailnet.imap.commands import search as searchCommands

    calls = []
    w = World()
    inThread = w.shared.inThread

    def counting(f, batch, *args):
        calls.append(len(batch))
        return inThread(f, batch, *args)

    w.shared.inThread = counting
    for i in range(10):
        w.deliver(message("m%d" % i, body=("needle\r\n" if i % 3 == 0 else "hay\r\n") + "x" * 3000 + "\r\n"))
    a = selected(w)
    monkeypatch.setattr(searchCommands, "SEARCH_BATCH_BYTES", 7000)
    assert b"* SEARCH 1 4 7 10\r\n" in a.cmd("SEARCH BODY needle")
    assert calls == [3, 3, 3, 1]


def test_long_fetch_lets_other_sessions_in(monkeypatch):
    """A FETCH that has had the reactor for FETCH_TURN seconds waits a turn, then goes on."""
    from mailnet.imap.commands import fetch as fetchCommands

    w = World()
    for i in range(5):
        w.deliver(message("m%d" % i))
    a = selected(w)
    other = w.client(login="bob@example.test")
    monkeypatch.setattr(fetchCommands, "FETCH_TURN", -1)  # every message is a long turn
    out = a.feed(b"f1 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
    assert out.count(b" FETCH (") == 1 and b"f1 OK" not in out
    assert b"n1 OK" in other.feed(b"n1 NOOP\r\n")  # another session is served meanwhile
    for _ in range(4):
        w.clock.advance(0)
        out += a.take()
    assert out.count(b" FETCH (") == 5 and b"Subject: m4" in out and b"f1 OK FETCH completed" in out


def test_a_defect_in_a_commands_grammar_fails_that_command_only(world, monkeypatch):
    # A grammar function that raises something other than a ParseError (a
    # defect of ours) must not loop on the buffered command nor end the
    # session: that command is BAD [SERVERBUG], the next one runs.
    from mailnet.imap import parser

    def broken(p, uid):
        raise AttributeError("no such grammar")

    c = world.client()
    c.login()
    monkeypatch.setitem(parser._COMMANDS, b"NOOP", broken)
    reply = c.cmd("NOOP")
    assert tagged(reply).endswith(b"BAD [SERVERBUG] The server could not parse this command")
    monkeypatch.undo()
    assert b"OK" in tagged(c.cmd("NOOP"))
