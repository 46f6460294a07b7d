"""
The webmail's cookie sessions, pure: no I/O, the clock injected.

A session id is 256 random bits, given to the browser once (in the
``mailnet_session`` cookie) and kept here only as its SHA-256, so a memory
dump or a log of this table does not hand out live sessions.  Each session
has its own CSRF token (256 random bits) that the app sends back in
``X-CSRF-Token`` on every change.  A session ends after ``idle`` seconds
without a request or ``maximum`` seconds after login, whichever comes
first, and at logout.  Sessions live in memory: a restart logs everyone
out (the app asks for the login again).  With the PostgreSQL store the
wiring gives the http service mailnet/store/postgres/sessions.py instead
(the same methods, returning Deferreds; shared by the nodes).

Memory is bounded: at most ``maxSessions`` sessions (the least recently
used is dropped first) and ``perUser`` per user (that user's oldest first).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import secrets

COOKIE = "mailnet_session"


@dataclasses.dataclass
class Session:
    """
    @ivar username: the canonical login (what the realm was asked for).
    @ivar csrf: the token the app must send in ``X-CSRF-Token``.
    @ivar created: when the user logged in (clock seconds).
    @ivar lastSeen: the last request with this session.
    """

    username: str
    csrf: str
    created: float
    lastSeen: float

    def csrfMatches(self, token) -> bool:
        """Constant-time comparison with a client's ``X-CSRF-Token`` (str, bytes or None)."""
        if token is None:
            return False
        if isinstance(token, bytes):
            token = token.decode("latin-1")
        return hmac.compare_digest(token.strip().encode("latin-1", "replace"), self.csrf.encode("ascii"))


def sessionKey(sessionId) -> bytes:
    """What is kept of a session id: its SHA-256 (here and in PostgreSQL's ``webmail_sessions``)."""
    if isinstance(sessionId, str):
        sessionId = sessionId.encode("latin-1", "replace")
    return hashlib.sha256(sessionId).digest()


class SessionStore:
    """
    @param clock: anything with ``seconds()`` (the reactor, a task.Clock).
    @param idle: seconds without a request after which a session ends.
    @param maximum: seconds after login after which a session ends.
    @param token: ``f() -> str``, a fresh random token (tests may pass one).
    """

    def __init__(self, clock, idle=8 * 3600, maximum=7 * 86400, maxSessions=100_000, perUser=50,
                 token=lambda: secrets.token_urlsafe(32)):
        self.clock = clock
        self.idle = idle
        self.maximum = maximum
        self.maxSessions = maxSessions
        self.perUser = perUser
        self.token = token
        self._sessions: collections.OrderedDict = collections.OrderedDict()  # sha256(id) -> Session
        self._byUser: dict = {}  # username -> {sha256(id): None}, oldest first

    def __len__(self):
        return len(self._sessions)

    def create(self, username) -> tuple[str, Session]:
        """A new session for ``username``: ``(sessionId, session)``; the id is
        given to the client and not kept."""
        now = self.clock.seconds()
        sessionId = self.token()
        session = Session(username, self.token(), now, now)
        mine = self._byUser.setdefault(username, {})
        while len(mine) >= self.perUser:
            self._drop(next(iter(mine)))
        key = sessionKey(sessionId)
        self._sessions[key] = session
        self._byUser.setdefault(username, {})[key] = None
        while len(self._sessions) > self.maxSessions:
            self._drop(next(iter(self._sessions)))
        return sessionId, session

    def _drop(self, key):
        session = self._sessions.pop(key, None)
        if session is None:
            return False
        mine = self._byUser.get(session.username)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._byUser[session.username]
        return True

    def find(self, sessionId):
        """The live session with this id (its idle time restarts), or None."""
        if not sessionId:
            return None
        key = sessionKey(sessionId)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock.seconds()
        if now - session.lastSeen > self.idle or now - session.created > self.maximum:
            self._drop(key)
            return None
        session.lastSeen = now
        self._sessions.move_to_end(key)
        return session

    def delete(self, sessionId) -> bool:
        """End a session (logout); False if there was none."""
        if not sessionId:
            return False
        return self._drop(sessionKey(sessionId))

    def sweep(self) -> int:
        """Forget expired sessions; how many."""
        now = self.clock.seconds()
        expired = [key for key, s in self._sessions.items()
                   if now - s.lastSeen > self.idle or now - s.created > self.maximum]
        for key in expired:
            self._drop(key)
        return len(expired)


def cookieValue(header) -> str | None:
    """The ``mailnet_session`` value from a Cookie header (RFC 6265 s5.4), or None."""
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    for pair in header.split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name.strip() == COOKIE:
            value = value.strip().strip('"')
            return value or None
    return None


def setCookie(sessionId, secure, maxAge=None) -> bytes:
    """The Set-Cookie value for a session (RFC 6265 s4.1; SameSite: RFC 6265bis s4.1.2.7)."""
    parts = [f"{COOKIE}={sessionId}", "HttpOnly", "SameSite=Strict", "Path=/"]
    if maxAge is not None:
        parts.append(f"Max-Age={int(maxAge)}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("ascii")


def clearCookie(secure) -> bytes:
    """The Set-Cookie value that removes the session cookie from the browser."""
    return setCookie("", secure, maxAge=0)
