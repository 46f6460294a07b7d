"""In-process helpers for the SMTP tests: a recording session handler and a
real Directory over small files."""

from __future__ import annotations

import base64

from mailnet import auth
from mailnet.smtp.replies import Reply
from mailnet.smtp.session import Session, Settings


def makeDirectory(tmp_path, users=("alice@example.test", "bob@example.test"), aliases=None, domains=("example.test",)):
    usersFile = tmp_path / "users"
    usersFile.write_text("".join(f"{u}:{{PLAIN}}{u.split('@')[0]}-pw\n" for u in users))
    aliasesFile = tmp_path / "aliases"
    aliasesFile.write_text("".join(f"{a}: {', '.join(t)}\n" for a, t in (aliases or {}).items()))
    return auth.Directory(list(domains), auth.UserDB(str(usersFile), cacheSeconds=0), auth.AliasDB(str(aliasesFile)))


class Recorder:
    """
    A session handler that records everything.  ``autoCommit`` answers
    commitMessage at once (synchronously) with ``commitReply``;
    ``passwords`` answers authenticate at once.
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

    def reply(self, reply):
        self.replies.append(reply)
        self.events.append(("reply", reply.code))

    def startTLS(self):
        self.tlsStarted = True
        self.events.append(("starttls",))

    def authenticate(self, username, password):
        self.events.append(("auth", username))
        if self.passwords is not None:
            ok = self.passwords.get(username) == password
            self.session.authResult(username if ok else None)
        else:
            self.pendingAuth = (username, password)

    def startMessage(self, envelope):
        self.current = [envelope, []]
        self.events.append(("start",))

    def messageData(self, data):
        self.current[1].append(data)

    def abortMessage(self):
        self.current = None
        self.events.append(("abort",))

    def commitMessage(self):
        envelope, chunks = self.current
        self.current = None
        self.events.append(("commit",))
        self.messages.append((envelope, b"".join(chunks)))
        if self.autoCommit:
            self.session.messageResult(self.commitReply)

    def close(self):
        self.closed = True
        self.events.append(("close",))

    # helpers

    def codes(self):
        return [r.code for r in self.replies]

    def take(self):
        out, self.replies = self.replies, []
        return out


def makeSession(tmp_path, tls=False, role="smtp", recorder=None, directory=None, **settings):
    recorder = recorder or Recorder()
    s = Settings(hostname="mx.example.test", role=role, postmasterDomain="example.test", **settings)
    session = Session(s, directory or makeDirectory(tmp_path), recorder, peer="192.0.2.1", tls=tls)
    recorder.session = session
    session.start()
    recorder.take()
    return session, recorder


def plain(user, password, authzid=""):
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def b64(text):
    return base64.b64encode(text.encode()).decode()
