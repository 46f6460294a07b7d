"""
The login sequence (mailnet.login) in-process: the throttle's arithmetic on a
task.Clock, the turn-taking, SASLprep, and the cost of checking an unknown
user (with real argon2 hashes).  The same behaviour over real sockets is in
tests/integration/test_login_throttle.py.
"""

import statistics
import time

import pytest
from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from zope.interface import implementer

from mailnet import auth, passwords
from mailnet.auth import IAuthenticatedUser, makePortal
from mailnet.login import AuthThrottle, LoginAbandoned, LoginBusy, LoginFailed, LoginSequence, addressKey
from mailnet.store.memory import MemoryStore

USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


@implementer(ICredentialsChecker)
class CountingChecker:
    """Plain passwords; records every check (the time it ran, the name)."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, clock):
        self.clock = clock
        self.checks = []

    def requestAvatarId(self, creds):
        name = auth.normalize(creds.username)
        self.checks.append((self.clock.seconds(), name))
        if USERS.get(name) == creds.password:
            return defer.succeed(name)
        return defer.fail(error.UnauthorizedLogin())


class World:
    def __init__(self, **options):
        self.clock = task.Clock()
        self.checker = CountingChecker(self.clock)
        options.setdefault("baseDelay", 1.0)
        self.throttle = AuthThrottle(self.clock, **options)
        self.sequence = LoginSequence(makePortal(MemoryStore(), [self.checker]), self.throttle, self.clock)

    def login(self, ip, user, password, alive=None):
        out = []
        self.sequence.login("test", ip, user, password, IAuthenticatedUser, alive=alive).addBoth(out.append)
        return out

    def tick(self, seconds):
        """Let time pass in small steps (task.Clock runs a call late by up to one step)."""
        for _ in range(round(seconds / 0.01)):
            self.clock.advance(0.01)

    @property
    def checks(self):
        return len(self.checker.checks)

    @property
    def times(self):
        return [round(t, 1) for t, _ in self.checker.checks]


def succeeded(out):
    return bool(out) and isinstance(out[0], tuple)


def failed(*outs):
    return all(out and not isinstance(out[0], tuple) and out[0].check(LoginFailed) for out in outs)


def test_delay_arithmetic():
    t = AuthThrottle(task.Clock(), baseDelay=1.0, maxDelay=5.0)
    assert [t.delayFor(n) for n in range(7)] == [0, 1, 2, 4, 5, 5, 5]
    assert AuthThrottle(task.Clock(), baseDelay=0).delayFor(10) == 0


def test_a_correct_password_from_a_throttled_address_waits_before_the_check():
    w = World()
    failure = w.login("192.0.2.1", "alice@example.test", "wrong")
    assert w.checks == 1 and failure == []  # checked at once, answered after the delay
    good = w.login("192.0.2.1", "alice@example.test", "alice-pw")
    assert w.checks == 1  # not checked yet
    w.tick(0.98)
    assert w.checks == 1 and good == [] and failure == []
    w.tick(0.03)
    assert w.checks == 2 and succeeded(good) and failed(failure)


def test_a_client_that_hangs_up_during_the_wait_gets_no_check():
    w = World()
    w.login("192.0.2.1", "alice@example.test", "wrong")
    gone = []
    first = w.login("192.0.2.1", "alice@example.test", "guess1", alive=lambda: not gone)
    w.tick(0.1)
    gone.append(True)  # hangs up, reconnects at once and guesses again
    second = w.login("192.0.2.1", "alice@example.test", "guess2")
    w.tick(0.3)
    assert first and first[0].check(LoginAbandoned)  # gone: its turn is given back, unchecked
    w.tick(0.55)
    assert w.checks == 1 and second == []  # the next still waits for the delay
    w.tick(0.1)  # the delay (1 s after the failure) is over
    assert w.times == [0, 1.0]


def test_parallel_attempts_from_one_address_are_spaced_by_the_delay():
    w = World()
    outs = [w.login("192.0.2.1", "alice@example.test", f"guess{i}") for i in range(5)]
    w.tick(40)
    # each check waits for the delay after the failure before it: 1, 2, 4, 8 s
    assert w.times == [0, 1.0, 3.0, 7.0, 15.0]
    assert failed(*outs)


def test_the_account_is_throttled_across_addresses():
    w = World()
    outs = [w.login("192.0.2.1", "alice@example.test", "wrong") for _ in range(3)]
    w.tick(3.5)
    assert w.times == [0, 1.0, 3.0]
    # another address, the right password: waits for alice's delay (3 failures: 4 s after the last)
    good = w.login("198.51.100.9", "alice@example.test", "alice-pw")
    w.tick(3.47)
    assert good == [] and w.checks == 3
    w.tick(0.05)
    assert succeeded(good) and failed(*outs)


def test_success_on_one_account_does_not_reset_another():
    w = World()
    ip1, bob = "192.0.2.1", "bob@example.test"
    outs = [w.login(ip1, bob, "wrong") for _ in range(3)]
    w.tick(3.5)
    assert w.times == [0, 1.0, 3.0]
    # the attacker logs in to their own account, from another address and from this one
    assert succeeded(w.login("198.51.100.1", "alice@example.test", "alice-pw"))
    own = w.login(ip1, "alice@example.test", "alice-pw")
    guess = w.login("203.0.113.5", bob, "wrong")
    other = w.login(ip1, "carol@example.test", "x")
    w.tick(3.47)
    assert w.checks == 4 and own == guess == other == []  # all wait for t=7 (3 failures: 4 s)
    w.tick(0.5)
    assert succeeded(own) and failed(*outs)
    assert w.times[4:] == [7.0, 7.0, 7.0]
    # neither success cleared bob's count: with 4 failures now, the next waits 8 s (not 1)
    later = w.login("203.0.113.6", bob, "wrong")
    w.tick(10)
    assert w.times[-1] == 15.0
    w.tick(30)
    assert failed(guess, other, later)


def test_success_clears_the_account_and_that_address_on_that_account():
    w = World()
    outs = [w.login("192.0.2.1", "alice@example.test", "wrong") for _ in range(2)]
    good = w.login("192.0.2.1", "alice@example.test", "alice-pw")
    w.tick(10)
    assert failed(*outs) and succeeded(good)
    assert w.times == [0, 1.0, 3.0]  # the right password waited its turn too
    assert w.throttle.wait("192.0.2.1", "carol@example.test") == 0
    assert w.throttle.wait("198.51.100.1", "alice@example.test") == 0


def test_others_guessing_do_not_lock_out_an_address_the_account_trusts():
    w = World()
    assert succeeded(w.login("192.0.2.1", "alice@example.test", "alice-pw"))
    outs = [w.login("203.0.113.5", "alice@example.test", "wrong") for _ in range(4)]
    w.tick(3.5)
    mine = w.login("192.0.2.1", "alice@example.test", "alice-pw")
    theirs = w.login("198.51.100.1", "alice@example.test", "alice-pw")
    assert succeeded(mine) and theirs == []
    w.tick(60)
    assert succeeded(theirs) and failed(*outs)


def test_too_many_waiting_is_try_again_later():
    w = World(maxWaiting=2)
    # the first is checked at once; the second waits for the delay, holding
    # the address's turn; two more wait for the turn; the fifth is refused
    outs = [w.login("192.0.2.1", "alice@example.test", "wrong") for _ in range(5)]
    assert outs[4] and outs[4][0].check(LoginBusy)
    w.tick(20)
    assert w.checks == 4 and failed(*outs[:4])


def test_failures_expire_after_the_window():
    w = World(window=100)
    outs = [w.login("192.0.2.1", "alice@example.test", "wrong") for _ in range(3)]
    w.tick(30)
    assert w.times == [0, 1.0, 3.0] and w.throttle.wait("192.0.2.1", "alice@example.test") == 0
    outs.append(w.login("192.0.2.1", "alice@example.test", "wrong"))
    outs.append(w.login("192.0.2.1", "alice@example.test", "wrong"))
    w.tick(20)
    assert w.times[3:] == [30.0, 38.0]  # 4 failures within the window: 8 s
    w.tick(101)  # 113 s after the last failure
    outs.append(w.login("192.0.2.1", "alice@example.test", "wrong"))
    outs.append(w.login("192.0.2.1", "alice@example.test", "wrong"))
    w.tick(2)
    assert w.times[5:] == [151.0, 152.0]  # forgotten: counted from 1 again
    w.tick(2)
    assert failed(*outs)


def test_memory_is_bounded():
    clock = task.Clock()
    t = AuthThrottle(clock, maxEntries=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}@example.test")
        t.succeeded(f"10.1.{i // 256}.{i % 256}", f"user{i}@example.test")
    assert max(len(t._addresses), len(t._accounts), len(t._pairs), len(t._trusted)) <= 100
    assert not t._gates


def test_ipv6_addresses_count_by_64():
    assert addressKey("2001:db8:1:2::1") == addressKey("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert addressKey("::ffff:192.0.2.1") == "192.0.2.1"
    t = AuthThrottle(task.Clock())
    t.failed("2001:db8:1:2::1", "x")
    assert t.wait("2001:db8:1:2::77", "y") == 1.0
    assert t.wait("2001:db8:1:3::1", "y") == 0


# SASLprep (RFC 4013)

@pytest.mark.parametrize("given, prepared", [
    ("I\u00adX", "IX"),      # RFC 4013 s3: SOFT HYPHEN mapped to nothing
    ("user", "user"),
    ("USER", "USER"),
    ("\u00aa", "a"),         # NFKC
    ("\u2168", "IX"),
    ("a\u00a0b", "a b"),     # non-ASCII space -> SPACE
    ("e\u0301t\u00e9", "\u00e9t\u00e9"),
])
def test_saslprep(given, prepared):
    assert passwords.saslprep(given) == prepared


@pytest.mark.parametrize("bad", ["a\u0007b", "\u0627\u0031", "x\u200ey", "tab\there", "\ufdd0"])
def test_saslprep_prohibited(bad):
    with pytest.raises(passwords.InvalidPassword):
        passwords.saslprep(bad)


@pytest.mark.parametrize("scheme", ["argon2id", "bcrypt", "sha512-crypt"])
def test_passwords_are_prepared_on_set_and_on_check(scheme):
    stored = passwords.make("caf\u00e9\u00a0cr\u00e8me", scheme)
    assert passwords.verify("cafe\u0301 cre\u0300me", stored)  # decomposed, ASCII space
    assert passwords.verify("caf\u00e9\u2003cr\u00e8me", stored)  # EM SPACE
    assert not passwords.verify("cafe creme", stored)
    assert not passwords.verify("caf\u00e9\u0007cr\u00e8me", stored)  # prohibited: just wrong
    with pytest.raises(passwords.InvalidPassword):
        passwords.make("bell\u0007", scheme)


def test_hashes_of_unprepared_passwords_still_work():
    # made before mailnet prepared passwords, or by Dovecot (which does not)
    stored = "{ARGON2ID}" + passwords._argon.hash("\ufb01x")  # LATIN SMALL LIGATURE FI
    assert passwords.verify("\ufb01x", stored)
    assert not passwords.verify("fix", stored)


# Timing: an unknown user costs what a wrong password costs (real argon2)

def inline(f, *args):
    return defer.maybeDeferred(f, *args)


def cost(users, name, password):
    out = []
    start = time.perf_counter()
    users.checkPassword(name, password).addBoth(out.append)
    elapsed = time.perf_counter() - start
    assert out and not isinstance(out[0], str) and out[0].check(error.UnauthorizedLogin)
    return elapsed


def test_unknown_user_takes_as_long_as_a_wrong_password(tmp_path):
    users = auth.UserDB(str(tmp_path / "users"), "argon2id", cacheSeconds=300, clock=task.Clock(), runInThread=inline)
    users.add("alice@example.test", "right")
    out = []
    users.checkPassword("alice@example.test", "right").addBoth(out.append)  # now cached
    assert out == ["alice@example.test"]
    known, unknown, cachedWrong = [], [], []
    for _ in range(3):  # interleaved, so load on the machine hits all three alike
        known.append(cost(users, "alice@example.test", "wrong"))
        unknown.append(cost(users, "nobody@example.test", "wrong"))
        cachedWrong.append(cost(users, "Alice@Example.test", "right "))
    k, u, c = statistics.median(known), statistics.median(unknown), statistics.median(cachedWrong)
    assert k > 0.002  # a real argon2 hash
    # the same work (before the dummy hash, an unknown user cost ~0.01% of it);
    # generous bounds: other processes share the machine
    assert 1 / 3 < u / k < 3, (k, u)
    assert 1 / 3 < c / k < 3, (k, c)


def test_a_known_users_first_login_costs_one_hash(tmp_path, monkeypatch):
    # the dummy hash is not made on a known user's login (the first login
    # after every start paid two argon2 hashes); the first unknown user makes
    # it, at the cost of one check, and later ones check against it
    auth.UserDB(str(tmp_path / "users"), "argon2id").add("alice@example.test", "right")
    users = auth.UserDB(str(tmp_path / "users"), "argon2id", cacheSeconds=0, clock=task.Clock(), runInThread=inline)
    made, checked = [], []
    make, verify = passwords.make, passwords.verify
    monkeypatch.setattr(passwords, "make", lambda *a: made.append(a) or make(*a))
    monkeypatch.setattr(passwords, "verify", lambda *a: checked.append(a) or verify(*a))
    out = []
    users.checkPassword("alice@example.test", "right").addBoth(out.append)
    assert out == ["alice@example.test"]
    assert (len(made), len(checked)) == (0, 1)
    for name in ("nobody@example.test", "nobody2@example.test"):
        users.checkPassword(name, "wrong").addBoth(out.append)
        assert out[-1].check(error.UnauthorizedLogin)
    assert (len(made), len(checked)) == (1, 2)


def test_a_client_that_hangs_up_gives_its_turn_back_soon():
    w = World(maxWaiting=2)
    w.login("192.0.2.1", "alice@example.test", "wrong")
    w.login("192.0.2.1", "alice@example.test", "wrong")  # waits for t=1, then fails: delay 2 s
    w.tick(1.1)
    gone = []
    waiting = [w.login("192.0.2.1", "alice@example.test", "x", alive=lambda: not gone) for _ in range(4)]
    assert waiting[3] and waiting[3][0].check(LoginBusy)  # one holds the turn, two wait, no room
    gone.append(True)  # all hang up
    w.tick(0.3)
    assert all(out and out[0].check(LoginAbandoned) for out in waiting[:3])
    good = w.login("192.0.2.1", "alice@example.test", "alice-pw")  # room again; checked at t=3
    w.tick(1.55)
    assert good == [] and w.checks == 2
    w.tick(0.1)
    assert succeeded(good) and w.times == [0, 1.0, 3.0]
