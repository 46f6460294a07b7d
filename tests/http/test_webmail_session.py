"""
The webmail's cookie sessions (mailnet/http/session.py), pure, on a
task.Clock: ids kept hashed, idle and absolute expiry, bounded memory, the
CSRF token compared in constant time, the cookie's attributes.
"""

from twisted.internet import task

from mailnet.http.session import COOKIE, SessionStore, clearCookie, cookieValue, setCookie


def store(**kw):
    clock = task.Clock()
    return clock, SessionStore(clock, **kw)


def test_create_and_find():
    clock, sessions = store()
    sessionId, session = sessions.create("alice@example.test")
    assert len(sessionId) >= 43 and len(session.csrf) >= 43  # 256 bits, URL-safe base64
    assert sessions.find(sessionId) is session
    assert sessions.find(sessionId + "x") is None
    assert sessions.find("") is None and sessions.find(None) is None
    other, _ = sessions.create("alice@example.test")
    assert other != sessionId


def test_ids_are_kept_hashed():
    clock, sessions = store()
    sessionId, session = sessions.create("alice@example.test")
    assert sessionId.encode() not in repr(sessions._sessions).encode()
    assert all(len(key) == 32 for key in sessions._sessions)


def test_idle_timeout_restarts_with_each_request():
    clock, sessions = store(idle=100, maximum=10_000)
    sessionId, _ = sessions.create("alice@example.test")
    for _ in range(5):
        clock.advance(90)
        assert sessions.find(sessionId) is not None
    clock.advance(101)
    assert sessions.find(sessionId) is None
    assert len(sessions) == 0  # forgotten, not only refused


def test_absolute_maximum():
    clock, sessions = store(idle=100, maximum=250)
    sessionId, _ = sessions.create("alice@example.test")
    clock.advance(90)
    assert sessions.find(sessionId)
    clock.advance(90)
    assert sessions.find(sessionId)
    clock.advance(90)  # 270 s after login, 90 s after the last use
    assert sessions.find(sessionId) is None


def test_delete_and_sweep():
    clock, sessions = store(idle=100)
    a, _ = sessions.create("alice@example.test")
    b, _ = sessions.create("bob@example.test")
    assert sessions.delete(a) and not sessions.delete(a)
    assert sessions.find(a) is None and sessions.find(b) is not None
    clock.advance(101)
    assert sessions.sweep() == 1 and len(sessions) == 0


def test_memory_is_bounded():
    clock, sessions = store(maxSessions=10, perUser=3)
    mine = [sessions.create("alice@example.test")[0] for _ in range(5)]
    assert [sessions.find(s) is not None for s in mine] == [False, False, True, True, True]
    others = [sessions.create(f"u{i}@example.test")[0] for i in range(20)]
    assert len(sessions) == 10
    assert sessions.find(others[-1]) is not None and sessions.find(others[0]) is None


def test_csrf_comparison():
    clock, sessions = store()
    _, session = sessions.create("alice@example.test")
    assert session.csrfMatches(session.csrf) and session.csrfMatches(session.csrf.encode())
    assert not session.csrfMatches(None) and not session.csrfMatches("") and not session.csrfMatches(b"x")
    assert not session.csrfMatches(session.csrf[:-1])
    assert not session.csrfMatches("é" + session.csrf)


def test_cookie_header_parsing():
    assert cookieValue(None) is None and cookieValue(b"") is None
    assert cookieValue(b"a=b; " + COOKIE.encode() + b"=xyz; c=d") == "xyz"
    assert cookieValue(COOKIE + '="q"') == "q"
    assert cookieValue(b"x" + COOKIE.encode() + b"=no") is None
    assert cookieValue(COOKIE.encode() + b"=") is None


def test_set_cookie_attributes():
    plain = setCookie("abc", secure=False).decode()
    assert plain == "mailnet_session=abc; HttpOnly; SameSite=Strict; Path=/"
    assert setCookie("abc", secure=True).decode().endswith("; Secure")
    cleared = clearCookie(False).decode()
    assert cleared.startswith("mailnet_session=;") and "Max-Age=0" in cleared


def test_the_per_user_index_stays_in_step():
    clock, sessions = store(idle=100, maxSessions=6, perUser=2)
    ids = {name: [sessions.create(f"{name}@example.test")[0] for _ in range(3)] for name in ("a", "b", "c", "d")}
    assert len(sessions) == 6
    sessions.delete(ids["d"][2])
    clock.advance(101)
    sessions.sweep()
    assert len(sessions) == 0 and sessions._byUser == {}


def test_a_login_costs_the_same_with_many_sessions():
    # Each login looks at its own user's sessions only (not all of them): 20,000 logins stay fast.
    import time

    clock, sessions = store()
    start = time.process_time()
    for i in range(20_000):
        sessions.create(f"user{i}@example.test")
    assert time.process_time() - start < 20  # quadratic would be minutes
