"""
The shared effects and their runner (mailnet.effects), in process: the order
effects run in, no command read while a long effect is outstanding, the
re-entrancy-safe pump, and Login through the real login sequence on a
task.Clock.
"""

import pytest
from twisted.internet import defer, task

from mailnet import auth
from mailnet.auth import IAuthenticatedUser, makePortal
from mailnet.effects import Close, EffectRunner, Login, LoginError, LoginOk, Send, StartTLS
from mailnet.login import AuthThrottle, LoginSequence
from mailnet.store.memory import MemoryStore
from tests.foundation.test_login import CountingChecker


class Wait:
    """A protocol effect that completes when the test fires ``d``."""

    def __init__(self):
        self.d = defer.Deferred()


class Session:
    """Answers commands from a script; records what was completed."""

    def __init__(self, script):
        self.script = list(script)
        self.outcomes = []

    def completed(self, effect, outcome):
        self.outcomes.append((effect, outcome))
        return [Send(b"done %s\r\n" % type(outcome).__name__.encode())]


class Runner(EffectRunner):
    protocolName = "test"
    peer = "192.0.2.9"
    avatarInterface = IAuthenticatedUser

    def __init__(self, script, sequence=None):
        self.session = Session(script)
        self.loginSequence = sequence
        self.out = []
        self.log = []
        self.initRunner({Wait: self.runWait})

    def nextEffects(self):
        if "close" in self.log or not self.session.script:
            return None
        return self.session.script.pop(0)

    def write(self, data):
        self.out.append(data)

    def flush(self):
        self.log.append("flush")

    def closeConnection(self):
        self.log.append("close")

    def startTLS(self):
        self.log.append("tls")

    def runWait(self, effect):
        self.log.append("wait")
        self.wait(effect.d)

    def internalError(self, failure):
        return [Send(b"internal error\r\n"), Close()]


def test_effects_run_in_order_and_close_flushes_first():
    r = Runner([[Send(b"a"), Send(b"b")], [Send(b"c"), StartTLS(), Send(b"d"), Close()]])
    r.pump()
    assert r.out == [b"a", b"b", b"c", b"d"]
    assert r.log == ["flush", "tls", "flush", "close", "flush"]


def test_no_command_while_a_long_effect_is_outstanding():
    w = Wait()
    r = Runner([[Send(b"1"), w], [Send(b"2")], [Send(b"3")]])
    r.pump()
    assert r.out == [b"1"] and r.busy
    r.pump()  # more input arrived meanwhile: still nothing
    assert r.out == [b"1"]
    w.d.callback([Send(b"after")])
    assert r.out == [b"1", b"after", b"2", b"3"] and not r.busy


def test_pump_is_reentrancy_safe():
    # A long effect that completes at once (an already-fired Deferred) calls
    # pump from inside the running loop: no second loop, order kept.
    w = Wait()
    w.d.callback([Send(b"now")])
    r = Runner([[w, Send(b"rest of the first")], [Send(b"next")]])
    r.pump()
    assert r.out == [b"now", b"rest of the first", b"next"]


def test_a_failed_long_effect_is_an_internal_error():
    w = Wait()
    r = Runner([[w], [Send(b"never")]])
    r.pump()
    w.d.errback(RuntimeError("boom"))
    assert r.out == [b"internal error\r\n"] and r.log[-2:] == ["close", "flush"]


def test_nothing_runs_once_stopped():
    w = Wait()
    r = Runner([[w]])
    r.pump()
    r.stopped = True
    w.d.callback([Send(b"late")])
    assert r.out == []


def test_login_repr_hides_the_password():
    assert "s3cret" not in repr(Login("alice", b"s3cret"))


@pytest.fixture
def world():
    clock = task.Clock()
    checker = CountingChecker(clock)
    throttle = AuthThrottle(clock, baseDelay=1.0)
    return clock, checker, LoginSequence(makePortal(MemoryStore(), [checker]), throttle, clock)


def test_login_ok_goes_to_the_session(world):
    clock, checker, sequence = world
    r = Runner([[Login("alice@example.test", "alice-pw")], [Send(b"next")]], sequence)
    r.pump()
    assert r.out == [b"done LoginOk\r\n", b"next"]
    (effect, outcome), = r.session.outcomes
    assert isinstance(outcome, LoginOk) and outcome.avatar.username == "alice@example.test"


def test_login_failure_waits_and_is_not_temporary(world):
    clock, checker, sequence = world
    r = Runner([[Login("alice@example.test", "wrong")], [Send(b"next")]], sequence)
    r.pump()
    assert r.busy and r.out == []  # the failure is answered after the delay
    clock.advance(5)
    assert r.out == [b"done LoginError\r\n", b"next"]
    assert r.session.outcomes[0][1] == LoginError(temporary=False)


def test_login_acting_for_another_is_refused_unchecked(world):
    clock, checker, sequence = world
    r = Runner([[Login("alice@example.test", "alice-pw", authzid="bob@example.test")]], sequence)
    r.pump()
    clock.advance(5)
    assert r.session.outcomes[0][1] == LoginError(temporary=False)
    assert checker.checks == []  # no password was checked


def test_login_abandoned_completes_nothing(world):
    clock, checker, sequence = world
    # A failing login holds the address's turn; the next one waits for it,
    # then for the throttle, and finds its client gone.
    Runner([[Login("alice@example.test", "wrong")]], sequence).pump()
    r = Runner([[Login("alice@example.test", "alice-pw")]], sequence)
    r.pump()
    r.stopped = True
    clock.advance(5)
    assert r.session.outcomes == [] and len(checker.checks) == 1


def test_login_store_failure_is_temporary(world):
    clock, checker, sequence = world

    class Broken:
        def login(self, *args, **kw):
            return defer.fail(RuntimeError("realm down"))

    sequence.portal = Broken()
    r = Runner([[Login("alice@example.test", "alice-pw")]], sequence)
    r.pump()
    assert r.session.outcomes[0][1] == LoginError(temporary=True)
    assert auth  # the module is imported for the portal
