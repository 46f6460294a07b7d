"""
FETCH, SEARCH, SORT, THREAD and the session's timers on the protocol shape,
pure: the session's effects run by a small fake runner in this file (no
reactor, no Twisted protocol; a task.Clock for the timers), over a folder
stand-in that holds its messages in memory.  Then the real runner's
``Start``/``Wait``/``Discard`` and timers, with Deferreds fired by hand.
"""

from __future__ import annotations

import io

from twisted.internet import defer, task

from mailnet.effects import PENDING, TAKEN
from mailnet.imap.effects import (
    CancelTimer,
    Close,
    CloseFolder,
    Discard,
    Drain,
    Failed,
    InThread,
    KeepFolder,
    LoginOk,
    NextTurn,
    Send,
    Start,
    StartPolling,
    StartTimer,
    StopPolling,
    StoreCall,
    TimerFired,
    Wait,
    Write,
)
from mailnet.imap.runner import IMAPRunner
from mailnet.imap.session import IMAPSession
from mailnet.imap.shared import IMAPSettings, Shared
from mailnet.store.interfaces import MessageInfo, NoSuchMessage


def message(n, subject, body=b"hello\r\n", refs=b""):
    return (b"From: a%d@example.test\r\nSubject: %s\r\nMessage-ID: <%d@example.test>\r\n%s\r\n%s"
            % (n, subject, n, refs, body))


class Folder:
    """A folder handle with its messages in memory (the store contract's synchronous index, Deferred-free calls)."""

    def __init__(self, messages):
        self.name = "INBOX"
        self.data = dict(enumerate(messages, 1))
        self.infos = [MessageInfo(uid, frozenset(), 1700000000.0 + uid, len(m), uid) for uid, m in self.data.items()]
        self.uidNext = len(messages) + 1
        self.uidValidity = 7
        self.highestModSeq = len(messages)
        self.mailboxId = None
        self.listeners = []
        self.opened = []  # the files handed out
        self.failing = {}  # uid -> exception openMessage raises
        self.closed = 0

    def messages(self):
        return list(self.infos)

    def get(self, uid):
        return next((i for i in self.infos if i.uid == uid), None)

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        if listener in self.listeners:
            self.listeners.remove(listener)

    def expungedSince(self, modseq):
        return None

    def refresh(self):
        return None

    def openMessage(self, uid):
        if uid in self.failing:
            raise self.failing[uid]
        f = io.BytesIO(self.data[uid])
        self.opened.append(f)
        return f

    def close(self):
        self.closed += 1


class Account:
    username = "alice@example.test"

    def __init__(self, folder):
        self.folder = folder

    def openFolder(self, name):
        return self.folder


class Out:
    """The connection facts; counts wake() calls."""

    secure = True
    peer = "192.0.2.1"

    def __init__(self):
        self.wakes = 0

    def wake(self):
        self.wakes += 1


class Runner:
    """
    A fake runner: runs the effects as the real one would, synchronously,
    timers on a task.Clock, and records what it ran.  ``hold`` names the
    Start-ed store methods whose outcome comes only when :meth:`release`
    is called (a store that opens in a worker thread).
    """

    def __init__(self, session, clock):
        self.session = session
        self.clock = clock
        self.data = bytearray()
        self.ran = []
        self.closed = False
        self.timers = {}
        self.hold = set()
        self.held = []  # (Start, outcome) not yet arrived
        self.waiting = None  # the Wait blocked on a held Start

    def run(self, effects):
        while effects:
            follow = None
            for e in effects:
                self.ran.append(e)
                kind = type(e)
                if kind is Send:
                    self.data += e.data
                elif kind is Write:
                    self.data += b"".join(e.pieces)
                elif kind is Close:
                    self.closed = True
                elif kind is CloseFolder:
                    e.folder.close()
                elif kind in (KeepFolder, StartPolling, StopPolling):
                    pass
                elif kind is Start:
                    self.start(e)
                elif kind is Discard:
                    for handle in e.handles:
                        handle.discard()
                elif kind is StartTimer:
                    self.startTimer(e)
                elif kind is CancelTimer:
                    call = self.timers.pop(e.name, None)
                    if call is not None and call.active():
                        call.cancel()
                else:  # a long effect: the last
                    outcome = self.outcome(e)
                    if outcome is PENDING:
                        return
                    follow = self.session.completed(e, outcome)
            effects = follow

    def outcome(self, e):
        kind = type(e)
        if kind is StoreCall:
            try:
                return getattr(e.target, e.method)(*e.args)
            except Exception as error:
                return Failed(error)
        if kind is InThread:
            return e.function(*e.args)
        if kind is Wait:
            outcome = e.handle.take()
            if outcome is PENDING:
                self.waiting = e
            return outcome
        if kind in (Drain, NextTurn):
            return False if kind is Drain else None
        raise AssertionError(e)

    def start(self, handle):
        inner = handle.effect
        outcome = self.outcome(inner)
        if type(inner) is StoreCall and inner.method in self.hold:
            self.held.append((handle, outcome))
        else:
            handle.outcome = outcome

    def release(self):
        """The held outcomes arrive (the one waited for resumes the session)."""
        held, self.held = self.held, []
        for handle, outcome in held:
            if handle.discarded:
                outcome.close()
                continue
            handle.outcome = outcome
            if self.waiting is not None and self.waiting.handle is handle:
                wait, self.waiting = self.waiting, None
                self.run(self.session.completed(wait, handle.take()))

    def startTimer(self, e):
        call = self.timers.get(e.name)
        if call is not None and call.active():
            call.reset(e.seconds)
        else:
            self.timers[e.name] = self.clock.callLater(e.seconds, self.fired, e.name)

    def fired(self, name):
        self.timers.pop(name, None)
        self.run(self.session.event(TimerFired(name)))

    def take(self):
        data = bytes(self.data)
        self.data.clear()
        return data

    def feed(self, data):
        self.run(self.session.feed(data))
        return self.take()


def connect(**settings):
    clock = task.Clock()
    options = {"allowPlaintext": False, "idlePoll": 0}
    options.update(settings)
    shared = Shared(IMAPSettings(None, **options), None, None, clock, login=object(),
                    inThread=lambda f, *a: defer.maybeDeferred(f, *a))
    out = Out()
    s = IMAPSession(shared, out)
    r = Runner(s, clock)
    r.run(s.start())
    r.take()
    return s, r, out


def selected(messages, **settings):
    s, r, out = connect(**settings)
    folder = Folder(messages)
    effects = s.feed(b"a LOGIN alice@example.test secret\r\n")
    login = effects[-1]
    r.run(effects[:-1])
    r.run(s.completed(login, LoginOk(Account(folder), lambda: None)))
    assert r.feed(b"s SELECT INBOX\r\n").endswith(b"s OK [READ-WRITE] SELECT completed\r\n")
    r.take()
    r.ran.clear()
    return s, r, folder, out


# FETCH


def test_fetch_opens_ahead_and_writes_the_bodies_as_pieces():
    bodies = [message(n, b"m%d" % n, b"body %d\r\n" % n * (n * 50)) for n in range(1, 11)]
    s, r, folder, _ = selected(bodies)
    reply = r.feed(b"f FETCH 1:* BODY.PEEK[]\r\n")
    expected = b"".join(b"* %d FETCH (BODY[] {%d}\r\n%s)\r\n" % (n, len(m), m) for n, m in enumerate(bodies, 1))
    assert reply == expected + b"f OK FETCH completed\r\n"
    starts = [e for e in r.ran if type(e) is Start]
    # First the folder is told which messages come (IFolder.prefetch, a hint).
    assert starts[0].effect == StoreCall(folder, "prefetch", (list(range(1, 11)),))
    starts = starts[1:]
    # Every message opened through a Start, none twice, in order.
    assert [e.effect for e in starts] == [StoreCall(folder, "openMessage", (uid,)) for uid in range(1, 11)]
    # Opens run ahead of their use: the first batch is started before anything is written.
    first = next(i for i, e in enumerate(r.ran) if type(e) in (Send, Write))
    assert sum(type(e) is Start for e in r.ran[:first]) >= 4
    # Bodies go out as pieces (no join of the message bytes); the store's files are closed.
    assert any(type(e) is Write for e in r.ran)
    assert all(f.closed for f in folder.opened) and len(folder.opened) == 10
    # Outcomes that had come were taken without a Wait: fewer round trips than messages.
    assert sum(type(e) is Wait for e in r.ran) < 10


def test_fetch_tells_the_folder_what_comes_64_at_a_time_ahead_of_the_opens():
    bodies = [message(n, b"m%d" % n) for n in range(1, 151)]
    s, r, folder, _ = selected(bodies)
    reply = r.feed(b"f FETCH 1:* BODY.PEEK[HEADER]\r\n")
    assert reply.endswith(b"f OK FETCH completed\r\n")
    calls = [e.effect for e in r.ran if type(e) is Start]
    hints = [(i, c.args[0]) for i, c in enumerate(calls) if c.method == "prefetch"]
    assert [uids for _, uids in hints] == [list(range(1, 65)), list(range(65, 129)), list(range(129, 151))]
    opens = [c.args[0] for c in calls if c.method == "openMessage"]
    assert opens == list(range(1, 151))
    # Each hint comes before the opens of its messages, about half a hint ahead.
    for i, uids in hints:
        assert all(c.method == "prefetch" or c.args[0] < uids[0] for c in calls[:i])
    # A single message: no hint.
    r.ran.clear()
    r.feed(b"g FETCH 7 BODY.PEEK[]\r\n")
    assert [e.effect.method for e in r.ran if type(e) is Start] == ["openMessage"]


def test_fetch_waits_for_an_open_that_has_not_come():
    bodies = [message(n, b"m%d" % n) for n in range(1, 4)]
    s, r, folder, _ = selected(bodies)
    r.hold.add("openMessage")
    assert r.feed(b"f FETCH 1:3 BODY.PEEK[HEADER]\r\n") == b""
    assert type(r.waiting) is Wait and r.waiting.handle.effect == StoreCall(folder, "openMessage", (1,))
    assert s.busy
    r.hold.clear()
    r.release()
    reply = r.take()
    assert reply.count(b" FETCH (BODY[HEADER] {") == 3 and reply.endswith(b"f OK FETCH completed\r\n")
    assert all(f.closed for f in folder.opened)


def test_fetch_of_a_message_gone_meanwhile_and_discarded_opens():
    bodies = [message(n, b"m%d" % n) for n in range(1, 8)]
    s, r, folder, _ = selected(bodies)
    folder.failing[2] = NoSuchMessage(2)
    reply = r.feed(b"f UID FETCH 1:7 BODY.PEEK[]\r\n")
    # RFC 3501 s6.4.8: a UID that no longer exists is left out without an error.
    assert reply.count(b" FETCH (UID ") == 6 and reply.endswith(b"f OK FETCH completed\r\n")
    # An I/O error ends the FETCH; the opens started ahead are discarded and their files closed.
    folder.failing = {3: OSError(5, "Input/output error")}
    folder.opened.clear()
    reply = r.feed(b"g FETCH 1:7 BODY.PEEK[]\r\n")
    assert reply.endswith(b"g NO [UNAVAILABLE] Temporary storage failure, please try again\r\n")
    assert any(type(e) is Discard for e in r.ran)
    assert folder.opened and all(f.closed for f in folder.opened)


def test_fetch_sets_seen_through_a_store_call():
    bodies = [message(1, b"one")]
    s, r, folder, _ = selected(bodies)

    def setFlags(uids, flags, how):
        folder.infos = [MessageInfo(i.uid, i.flags | set(flags), i.internalDate, i.size, i.modseq + 1)
                        for i in folder.infos]
        return folder.infos, []

    folder.setFlags = setFlags
    reply = r.feed(b"f FETCH 1 BODY[]\r\n")
    assert StoreCall(folder, "setFlags", ([1], ["\\Seen"], "add")) in r.ran
    assert b"FLAGS (\\Seen)" in reply and reply.endswith(b"f OK FETCH completed\r\n")


# SEARCH, SORT, THREAD


def test_search_text_reads_and_matches_in_worker_batches():
    bodies = [message(n, b"m%d" % n, b"needle\r\n" if n % 10 == 0 else b"hay\r\n") for n in range(1, 201)]
    s, r, folder, _ = selected(bodies)
    reply = r.feed(b"a SEARCH TEXT needle\r\n")
    assert reply == b"* SEARCH " + b" ".join(b"%d" % n for n in range(10, 201, 10)) + b"\r\na OK SEARCH completed\r\n"
    # The batches run in worker threads: one started while the next is being opened.
    threads = [e for e in r.ran if type(e) is InThread or (type(e) is Start and type(e.effect) is InThread)]
    assert len(threads) == 4  # 200 messages, 64 a batch
    assert any(type(e) is Start and type(e.effect) is InThread for e in r.ran)
    assert all(f.closed for f in folder.opened)


def test_sort_reads_headers_in_a_worker_thread_then_answers_from_the_cache():
    bodies = [message(n, b"subject %s" % s) for n, s in enumerate([b"c", b"a", b"b"], 1)]
    s, r, folder, _ = selected(bodies)
    assert r.feed(b"a SORT (SUBJECT) UTF-8 ALL\r\n") == b"* SORT 2 3 1\r\na OK SORT completed\r\n"
    assert any(type(e) is InThread for e in r.ran)
    r.ran.clear()
    assert r.feed(b"b UID SORT (REVERSE SUBJECT) UTF-8 ALL\r\n") == b"* SORT 1 3 2\r\nb OK SORT completed\r\n"
    assert not any(type(e) in (InThread, Start) for e in r.ran)  # the sort cache


def test_thread_references():
    bodies = [message(1, b"root"), message(2, b"Re: root", refs=b"References: <1@example.test>\r\n"),
              message(3, b"other")]
    s, r, folder, _ = selected(bodies)
    reply = r.feed(b"a THREAD REFERENCES UTF-8 ALL\r\n")
    assert reply == b"* THREAD (1 2)(3)\r\na OK THREAD completed\r\n"
    assert any(type(e) is InThread for e in r.ran)


# Timers: StartTimer / CancelTimer effects, TimerFired events


def test_autologout_fires_on_the_clock_and_input_moves_it():
    s, r, out = connect(loginDeadline=1000)
    assert set(r.timers) == {"autologout", "deadlines"}
    r.clock.advance(100)
    assert r.feed(b"a NOOP\r\n") == b"a OK NOOP completed\r\n"
    r.clock.advance(20)  # 120 s after connecting: the timer fires, finds input 20 s ago, looks again later
    assert not r.closed and r.take() == b""
    r.clock.advance(99)
    assert not r.closed
    r.clock.advance(1)  # 120 s after the NOOP (before login the limit is 120 s)
    assert r.take() == b"* BYE Autologout; idle for too long\r\n" and r.closed


def test_the_login_deadline_is_a_timer_effect():
    s, r, out = connect(loginDeadline=30, idleTimeout=3600)
    for _ in range(5):
        r.clock.advance(5)
        r.feed(b"a NOOP\r\n")  # busy, but no login
    r.clock.advance(5)
    assert r.take() == b"* BYE Autologout; no login within 30 seconds\r\n" and r.closed


def test_a_command_deadline_and_its_cancel():
    s, r, out = connect(commandDeadline=10, minDataRate=10 ** 9)
    r.feed(b"a NOO")  # half a command: its deadline starts
    r.clock.advance(9)
    assert not r.closed
    r.feed(b"P\r\n")
    r.clock.advance(5)  # done in time: no BYE
    assert not r.closed
    r.feed(b"b NOOP")
    r.clock.advance(10)
    assert r.take() == b"* BYE Autologout; command not completed in time\r\n" and r.closed


def test_idle_hears_a_store_event_through_a_wake_up():
    bodies = [message(1, b"one")]
    s, r, folder, out = selected(bodies, idlePoll=2.0)
    assert r.feed(b"i IDLE\r\n") == b"+ idling\r\n"
    assert any(type(e) is StartPolling for e in r.ran)
    # Another session delivers: the store tells our view, outside our turn.
    new = MessageInfo(2, frozenset(), 1700000002.0, 10, 2)
    folder.infos.append(new)
    for listener in folder.listeners:
        listener.messagesAdded(folder, [new])
    assert out.wakes == 1  # the session asked its runner for a turn...
    for listener in folder.listeners:
        listener.messagesAdded(folder, [])
    assert out.wakes == 1  # ...once
    r.run(s.event(TimerFired("wake")))  # ...which the runner gives it on the next reactor turn
    assert r.take() == b"* 2 EXISTS\r\n* 1 RECENT\r\n"
    assert r.feed(b"DONE\r\n") == b"i OK IDLE terminated\r\n"


def test_idle_refreshes_stop_the_autologout_only_after_idle_timeout():
    s, r, folder, out = selected([message(1, b"one")], idleTimeout=600)
    r.feed(b"i IDLE\r\n")
    r.clock.advance(599)
    assert not r.closed
    r.clock.advance(1)
    assert r.take() == b"* BYE Autologout; idle for too long\r\n" and r.closed


# The real runner: Start / Wait / Discard and the timers


class Protocol(IMAPRunner):
    """The real runner over a stand-in session and connection."""

    def __init__(self, clock):
        self.initIMAPRunner()
        self.shared = Shared(IMAPSettings(None), None, None, clock, inThread=lambda f, *a: defer.maybeDeferred(f, *a))
        self.peer = "192.0.2.1"
        self.written = []
        self.session = self

    # the session side
    def completed(self, effect, outcome):
        self.written.append(("completed", outcome))
        return []

    def event(self, event):
        self.written.append(("event", event.name))
        return []

    # the connection side
    def write(self, data):
        self.written.append(data)

    def writeSequence(self, pieces):
        self.written.append(b"".join(pieces))

    def drained(self):
        return None  # the transport always has room


class Target:
    def __init__(self):
        self.calls = {}

    def openMessage(self, uid):
        d = self.calls[uid] = defer.Deferred()
        return d


def test_runner_start_wait_and_a_late_outcome():
    p = Protocol(task.Clock())
    target = Target()
    first, second = Start(StoreCall(target, "openMessage", (1,))), Start(StoreCall(target, "openMessage", (2,)))
    p.runEffects([first, second, Wait(first)])
    assert p.busy and p.written == []
    f = io.BytesIO(b"x")
    target.calls[1].callback(f)
    assert not p.busy and p.written == [("completed", f)]
    # The second came before anyone waited: taken at once by a Wait (or by the session itself).
    g = io.BytesIO(b"y")
    target.calls[2].callback(g)
    assert second.outcome is g
    p.runEffects([Wait(second)])
    assert p.written[-1] == ("completed", g) and second.outcome is TAKEN


def test_runner_discard_closes_what_comes_later_and_failures_are_not_lost():
    p = Protocol(task.Clock())
    target = Target()
    late, failing = Start(StoreCall(target, "openMessage", (1,))), Start(StoreCall(target, "openMessage", (2,)))
    p.runEffects([late, failing, Discard((late,))])
    f = io.BytesIO(b"x")
    target.calls[1].callback(f)
    assert f.closed
    target.calls[2].errback(NoSuchMessage(2))
    p.runEffects([Wait(failing)])
    [(_, outcome)] = p.written
    assert type(outcome) is Failed and isinstance(outcome.error, NoSuchMessage)


def test_runner_timers_on_the_clock_and_stopped_with_the_connection():
    clock = task.Clock()
    p = Protocol(clock)
    p.runEffects([StartTimer("autologout", 10), StartTimer("deadlines", 5)])
    clock.advance(5)
    assert p.written == [("event", "deadlines")]
    p.runEffects([StartTimer("autologout", 3)])  # moved
    clock.advance(3)
    assert p.written[-1] == ("event", "autologout")
    p.runEffects([StartTimer("deadlines", 5), CancelTimer("deadlines")])
    p.wake()
    p.wake()
    clock.advance(0)
    assert p.written[-1] == ("event", "wake") and p.written.count(("event", "wake")) == 1
    target = Target()
    pending = Start(StoreCall(target, "openMessage", (1,)))
    p.runEffects([StartTimer("autologout", 10), pending])
    p.stopRunner()
    assert clock.getDelayedCalls() == []
    f = io.BytesIO(b"x")
    target.calls[1].callback(f)
    assert f.closed  # the connection went: what was started is closed when it comes
