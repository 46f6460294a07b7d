"""In-process helpers for the SMTP tests: a runner that records a session's
effects and a real Directory over small files."""

from __future__ import annotations

import base64

from mailnet import auth
from mailnet.auth import AuthenticatedUser
from mailnet.effects import Close, Login, LoginError, LoginOk, StartTLS
from mailnet.smtp.replies import Reply
from mailnet.smtp.session import AbortMessage, CommitMessage, MessageData, OpenMessage, SMTPSession, SMTPSettings


def makeDirectory(tmp_path, users=("alice@example.test", "bob@example.test"), aliases=None, domains=("example.test",)):
    usersFile = tmp_path / "users"
    usersFile.write_text("".join(f"{u}:{{PLAIN}}{u.split('@')[0]}-pw\n" for u in users))
    aliasesFile = tmp_path / "aliases"
    aliasesFile.write_text("".join(f"{a}: {', '.join(t)}\n" for a, t in (aliases or {}).items()))
    return auth.Directory(list(domains), auth.UserDB(str(usersFile), cacheSeconds=0), auth.AliasDB(str(aliasesFile)))


class Recorder:
    """
    A runner for a session's effects that records everything.
    ``autoCommit`` answers CommitMessage at once with ``commitReply``;
    ``passwords`` answers Login at once.
    """

    def __init__(self, autoCommit=True, passwords=None):
        self.replies: list[Reply] = []
        self.events = []
        self.messages = []  # (envelope, bytes) committed
        self.current = None
        self.autoCommit = autoCommit
        self.commitReply = Reply(250, "2.0.0", "OK")
        self.passwords = passwords
        self.session = None
        self.closed = False
        self.tlsStarted = False
        self.pendingAuth = None

    def run(self, effects):
        for effect in effects:
            self.handle(effect)

    def handle(self, effect):
        if isinstance(effect, Reply):
            self.replies.append(effect)
            self.events.append(("reply", effect.code))
        elif isinstance(effect, StartTLS):
            self.tlsStarted = True
            self.events.append(("starttls",))
        elif isinstance(effect, Login):
            self.events.append(("auth", effect.username))
            if self.passwords is not None:
                ok = self.passwords.get(effect.username) == effect.password
                outcome = LoginOk(AuthenticatedUser(effect.username), lambda: None) if ok else LoginError()
                self.run(self.session.completed(effect, outcome))
            else:
                self.pendingAuth = (effect.username, effect.password)
        elif isinstance(effect, OpenMessage):
            self.current = [effect.envelope, []]
            self.events.append(("start",))
        elif isinstance(effect, MessageData):
            self.current[1].append(effect.data)
        elif isinstance(effect, AbortMessage):
            self.current = None
            self.events.append(("abort",))
        elif isinstance(effect, CommitMessage):
            envelope, chunks = self.current
            self.current = None
            self.events.append(("commit",))
            self.messages.append((envelope, b"".join(chunks)))
            if self.autoCommit:
                self.run(self.session.completed(effect, self.commitReply))
        elif isinstance(effect, Close):
            self.closed = True
            self.events.append(("close",))
        else:
            raise AssertionError(effect)

    # helpers

    def codes(self):
        return [r.code for r in self.replies]

    def take(self):
        out, self.replies = self.replies, []
        return out


class Driven:
    """A session whose effects go to a :class:`Recorder` (the session's
    other attributes read through)."""

    def __init__(self, session, recorder):
        self.__dict__["_session"] = session
        self.__dict__["_recorder"] = recorder

    def __getattr__(self, name):
        value = getattr(self._session, name)
        if name in ("start", "feed", "completed", "authResult", "messageResult", "timeout", "shutdown",
                    "connectionLost"):
            def driven(*args, **kw):
                self._recorder.run(value(*args, **kw))
            return driven
        return value

    def __setattr__(self, name, value):
        setattr(self._session, name, value)


def makeSession(tmp_path, tls=False, role="smtp", recorder=None, directory=None, **settings):
    recorder = recorder or Recorder()
    s = SMTPSettings(hostname="mx.example.test", role=role, postmasterDomain="example.test", **settings)
    session = SMTPSession(s, directory or makeDirectory(tmp_path), peer="192.0.2.1", tls=tls)
    recorder.session = session
    driven = Driven(session, recorder)
    driven.start()
    recorder.take()
    return driven, recorder


def plain(user, password, authzid=""):
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def b64(text):
    return base64.b64encode(text.encode()).decode()
