"""HTTP Basic sends the password with every request: one "logged in" line at info per user per window, the rest at debug."""

from mailnet import login
from tests.http.inprocess import HTTP, basic


class Spy:
    def __init__(self):
        self.lines = []

    def info(self, format, **kw):
        self.lines.append(("info", format.format(**kw)))

    def debug(self, format, **kw):
        self.lines.append(("debug", format.format(**kw)))

    def failure(self, format, *a, **kw):
        self.lines.append(("failure", format))

    def loggedIn(self):
        return [level for level, line in self.lines if line.endswith("logged in")]


def test_repeated_basic_logins_log_at_debug_within_the_window(tmp_path, monkeypatch):
    spy = Spy()
    monkeypatch.setattr(login, "log", spy)
    http = HTTP(tmp_path)
    for _ in range(3):
        assert http.request(b"GET", b"/.well-known/jmap").status == 200
    assert spy.loggedIn() == ["info", "debug", "debug"]
    assert http.checker.checks == 3  # the password is still checked every time (no cache here)
    assert http.request(b"GET", b"/.well-known/jmap", auth=basic("bob@example.test")).status == 200
    assert spy.loggedIn()[-1] == "info"  # another user: its own first line
    assert http.request(b"GET", b"/.well-known/jmap", auth=basic(password="wrong")).status == 401
    assert ("info", "http: 127.0.0.1: failed login for 'alice@example.test'") in spy.lines
    http.clock.advance(login.LoginSequence.repeatWindow + 1)
    assert http.request(b"GET", b"/.well-known/jmap").status == 200
    assert spy.loggedIn()[-1] == "info"  # the window has passed


def test_other_protocols_log_every_login_at_info(monkeypatch):
    from twisted.internet import task

    spy = Spy()
    monkeypatch.setattr(login, "log", spy)
    sequence = login.LoginSequence(None, login.AuthThrottle(task.Clock()))
    assert [sequence._repeated("imap", "alice") for _ in range(3)] == [False, False, False]
    assert [sequence._repeated("http", "alice") for _ in range(2)] == [False, True]
