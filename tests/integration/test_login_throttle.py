"""
The login throttle and SASLprep against the real server, over real sockets,
on all three protocols (SMTP AUTH on submissions, IMAP AUTHENTICATE PLAIN on
imaps, POP3 USER/PASS on pop3s), some from a second client address
(127.0.0.2: the client socket is bound to it).

Users here have {PLAIN} hashes so that a check costs nothing and every
delay measured is the throttle's.  Only lower bounds of times are asserted
(a loaded machine makes things slower, never faster), except the count of
checks in a bounded time, which load can only lower.
"""

import base64
import re
import socket
import ssl
import time

import pytest

PROTOCOLS = ["smtp", "imap", "pop3"]
PORTS = {"smtp": "submissions", "imap": "imaps", "pop3": "pop3s"}
USERS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}

_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE


def b64plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Attempt:
    """One connection that sends one login and (maybe) reads its outcome."""

    def __init__(self, server, protocol, user, password, source="127.0.0.1"):
        self.protocol = protocol
        raw = socket.create_connection(("127.0.0.1", server.port(PORTS[protocol])), timeout=60,
                                       source_address=(source, 0))
        self.sock = _TLS.wrap_socket(raw)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # greeting (one line from each of ours)
        if protocol == "smtp":
            self.send("EHLO client.test")
            self.reply()
            self.send("AUTH PLAIN " + b64plain(user, password))
        elif protocol == "imap":
            self.send("a AUTHENTICATE PLAIN " + b64plain(user, password))
        else:
            self.send("USER " + user)
            assert self.reply().startswith(b"+OK")
            self.send(b"PASS " + password.encode("utf-8"))
        self.started = time.monotonic()

    def send(self, line):
        self.sock.sendall((line if isinstance(line, bytes) else line.encode()) + b"\r\n")

    def reply(self) -> bytes:
        while True:
            line = self.file.readline()
            if not line:
                return b""
            if self.protocol == "smtp" and line[3:4] == b"-":
                continue
            if self.protocol == "imap" and line.startswith(b"* "):
                continue
            return line

    def outcome(self) -> bool:
        """True for a successful login, False for a refusal."""
        line = self.reply()
        self.elapsed = time.monotonic() - self.started
        return line.startswith((b"235 ", b"a OK", b"+OK"))

    def alive(self) -> bool:
        """The session still answers after the login's outcome."""
        self.send({"smtp": "NOOP", "imap": "b NOOP", "pop3": "NOOP"}[self.protocol])
        line = self.reply()
        return line.startswith((b"250 ", b"b OK", b"+OK", b"-ERR"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def login(server, protocol, user, password, source="127.0.0.1"):
    a = Attempt(server, protocol, user, password, source)
    try:
        ok = a.outcome()
        return ok, a.elapsed
    finally:
        a.close()


_FAILED = re.compile(r"(failed login for|login failed for) '?([^' ]+)")


def failures(server, user=None):
    """Failed password checks the server logged (for one user)."""
    return [m.group(2) for m in map(_FAILED.search, list(server.output)) if m and (user is None or m.group(2) == user)]


def waitForFailures(server, n, user, timeout=30):
    deadline = time.monotonic() + timeout
    while len(failures(server, user)) < n:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.01)


def start(make_server, delay):
    s = make_server(config={"auth": {"failure_delay": delay, "hash": "bcrypt"}})
    with open(s.dataDir + "/users", "a") as f:
        for user, password in USERS.items():
            f.write(f"{user}:{{PLAIN}}{password}\n")
    return s


def have127002():
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


needs127002 = pytest.mark.skipif(not have127002(), reason="cannot bind 127.0.0.2")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_correct_password_from_a_throttled_address_waits(make_server, protocol):
    s = start(make_server, 1.0)
    wrong = Attempt(s, protocol, "alice@example.test", "wrong")
    waitForFailures(s, 1, "alice@example.test")
    ok, elapsed = login(s, protocol, "alice@example.test", "alice-pw")
    assert ok
    # checked only once the delay after the failure (1 s) had passed
    assert elapsed >= 0.6, elapsed
    assert wrong.outcome() is False
    wrong.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hanging_up_early_buys_no_extra_checks(make_server, protocol):
    s = start(make_server, 0.5)
    end = time.monotonic() + 6
    sent = 0
    while time.monotonic() < end:
        a = Attempt(s, protocol, "alice@example.test", f"guess{sent}")
        sent += 1
        time.sleep(0.1)  # hang up without waiting for the answer
        a.close()
    time.sleep(1.5)  # what was already being checked is logged by now
    # delays 0.5, 1, 2, 4 s: checks at 0, 0.5, 1.5, 3.5 (and 7.5) s
    checked = len(failures(s, "alice@example.test"))
    assert sent > 10, sent
    assert 1 <= checked <= 6, (checked, sent)
    # the right password still gets in once its turn comes
    assert login(s, protocol, "alice@example.test", "alice-pw")[0]


@needs127002
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_account_is_throttled_across_addresses(make_server, protocol):
    s = start(make_server, 1.0)
    wrong = Attempt(s, protocol, "alice@example.test", "wrong", source="127.0.0.1")
    waitForFailures(s, 1, "alice@example.test")
    ok, elapsed = login(s, protocol, "alice@example.test", "alice-pw", source="127.0.0.2")
    assert ok
    assert elapsed >= 0.6, elapsed  # alice's delay applies from another address too
    wrong.close()


@needs127002
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_success_on_one_account_does_not_reset_another(make_server, protocol):
    s = start(make_server, 0.25)
    for n in range(3):  # bob: three failures (answered after 0.25, 0.5, 1 s)
        assert login(s, protocol, "bob@example.test", "wrong")[0] is False
    # the guesser logs in to an account of their own, from the same address
    assert login(s, protocol, "alice@example.test", "alice-pw")[0]
    # bob's count is intact: a fourth failure (from another address) is
    # answered after 2 s, not after the first delay of 0.25 s
    ok, elapsed = login(s, protocol, "bob@example.test", "wrong", source="127.0.0.2")
    assert not ok
    assert elapsed >= 1.2, elapsed


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_passwords_are_saslprepped_on_every_protocol(make_server, protocol):
    s = make_server(config={"auth": {"failure_delay": 0.05, "hash": "bcrypt"}})
    from mailnet import auth

    auth.UserDB(s.dataDir + "/users", "bcrypt", 0).add("carol@example.test", "caf\u00e9\u00a0cr\u00e8me")
    # decomposed accents and an EM SPACE: the same password after SASLprep
    assert login(s, protocol, "carol@example.test", "cafe\u0301\u2003cre\u0300me")[0]
    assert login(s, protocol, "carol@example.test", "caf\u00e9 cr\u00e8me")[0]
    # a prohibited character (LEFT-TO-RIGHT MARK) is a clean failure; the session goes on
    a = Attempt(s, protocol, "carol@example.test", "caf\u00e9\u200e cr\u00e8me")
    assert a.outcome() is False
    assert a.alive()
    a.close()
