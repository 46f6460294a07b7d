"""
POP3 without I/O: command lines in, replies and effects out.

* :class:`LineBuffer` cuts the byte stream into lines and spots overlong ones.
* :func:`parseCommand` turns one line into a :class:`Command`.
* :class:`Maildrop` is the message list snapshot taken at login and the
  deletion marks (RFC 1939 s5, s6).
* :class:`POP3Session` is the state machine (AUTHORIZATION, TRANSACTION,
  UPDATE).  It answers what it can by itself and hands what needs I/O
  (checking a password, opening the maildrop, sending a message, removing
  messages, starting TLS) to the runner as effects (the shared ones of
  :mod:`mailnet.effects` plus :class:`OpenMaildrop`, :class:`Retrieve`,
  :class:`Update`); the runner reports the outcome of a long one through
  :meth:`POP3Session.completed`, which returns more effects.  Commands are
  dispatched through one table, :data:`COMMANDS`, to ``cmdX`` methods.
* :func:`topChunks` and :class:`mailnet.mail.lines.DotStuffer` produce the body of RETR and TOP
  responses in chunks, so that a message is never held in memory whole.

The effects are run by :mod:`mailnet.pop3.runner`; the Twisted protocol in
:mod:`mailnet.pop3.server` only moves bytes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import re

from mailnet.effects import Close, Effect, Login, LoginError, LoginOk, Send, StartTLS

__all__ = ["Close", "Effect", "Login", "LoginError", "LoginOk", "Send", "StartTLS"]  # used through this module too

CRLF = b"\r\n"

# RFC 2449 s4: a command line is at most 255 octets, CRLF included.
MAX_COMMAND_LINE = 255
# Lines sent in answer to a SASL challenge are not commands; RFC 5034 s4
# lets the client put a long initial response there.  Bounded all the same.
MAX_SASL_LINE = 8192


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


# Replies


def ok(text: str = "") -> bytes:
    return b"+OK" + (b" " + text.encode() if text else b"") + CRLF


def err(text: str, code: str | None = None) -> bytes:
    # RFC 2449 s8: extended response codes in brackets after -ERR.
    prefix = f"[{code}] " if code else ""
    return b"-ERR " + (prefix + text).encode() + CRLF


def multiline(first: bytes, lines) -> bytes:
    """A whole multi-line response (RFC 1939 s3) of lines without CRLF."""
    out = [first]
    for line in lines:
        if line.startswith(b"."):
            line = b"." + line
        out.append(line + CRLF)
    out.append(b"." + CRLF)
    return b"".join(out)


# Line splitting


class Overlong:
    """Marker returned by :meth:`LineBuffer.next` for a line over the limit."""

    def __repr__(self):
        return "OVERLONG"


OVERLONG = Overlong()


class LineBuffer:
    """
    Bytes in, lines out (without the line end).

    Lines end in CRLF; a bare LF is accepted as a line end too, as most
    servers do.  A line longer than the limit (line end included) is
    dropped up to its end and reported once as :data:`OVERLONG`, so that the
    session answers it with one ``-ERR`` and stays in step with the client.

    ``next(limit)`` pulls one line at a time so the caller can change the
    limit between lines (a SASL response may be longer than a command).
    """

    def __init__(self):
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes):
        self._buffer += data

    def clear(self):
        """Forget everything buffered (RFC 2595 s4: at STLS)."""
        self._buffer.clear()
        self._discarding = False

    def __len__(self):
        return len(self._buffer)

    @property
    def partial(self) -> bool:
        """A line has begun and not ended (once whole lines are taken)."""
        return self._discarding or (bool(self._buffer) and b"\n" not in self._buffer)

    def peek(self, count: int, skip: int = 0, limit: int = 64) -> list[bytes]:
        """
        Whole lines buffered after the current position, without consuming
        them: after the first ``skip`` lines, up to ``count`` lines (those
        longer than ``limit`` come back as b"").  Used to look ahead at
        pipelined commands.
        """
        if self._discarding:
            return []
        out = []
        start = 0
        buf = self._buffer
        while len(out) < count:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if skip:
                skip -= 1
            else:
                out.append(bytes(buf[start:end]).rstrip(b"\r") if end - start < limit else b"")
            start = end + 1
        return out

    def next(self, limit: int = MAX_COMMAND_LINE):
        """
        @return: the next line (bytes), :data:`OVERLONG`, or None when no
            whole line is buffered yet.
        """
        buf = self._buffer
        while True:
            end = buf.find(b"\n")
            if self._discarding:
                if end < 0:
                    buf.clear()
                    return None
                del buf[: end + 1]
                self._discarding = False
                return OVERLONG
            if end < 0:
                if len(buf) > limit:
                    # No line end yet and already too long: drop as it comes.
                    buf.clear()
                    self._discarding = True
                return None
            if end + 1 > limit:
                del buf[: end + 1]
                return OVERLONG
            line = bytes(buf[:end])
            del buf[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            return line


# Commands


class CommandError(Exception):
    """A line that is not a command; ``str()`` is the text for ``-ERR``."""


@dataclasses.dataclass(frozen=True)
class Command:
    """
    @ivar name: the keyword, upper case (``"RETR"``).
    @ivar args: the arguments split on spaces.
    @ivar rest: everything after the keyword and one space, unsplit (PASS
        takes it whole: RFC 1939 s7 lets a password contain spaces).
    """

    name: str
    args: tuple = ()
    rest: bytes = b""


def parseCommand(line: bytes) -> Command:
    """
    Parse one command line (without CRLF).

    RFC 1939 s3: a case-insensitive keyword, then arguments separated by
    spaces.  Keywords are printable ASCII; a NUL or other control character
    anywhere in the line is refused.

    @raise CommandError: the line is not a command.
    """
    if not line.strip(b" "):
        raise CommandError("Empty command")
    if _CONTROL.search(line):
        raise CommandError("Control characters are not allowed in commands")
    keyword, _, rest = line.partition(b" ")
    if not _KEYWORD.fullmatch(keyword):
        raise CommandError("Bad command keyword")
    return Command(keyword.decode("ascii").upper(), tuple(rest.split()), rest)


_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_KEYWORD = re.compile(rb"[\x21-\x7e]{1,40}")


def parseNumber(arg: bytes) -> int | None:
    """A message number or line count: decimal digits only, or None."""
    if not arg or len(arg) > 10 or not arg.isdigit():
        return None
    return int(arg)


# The maildrop snapshot


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    uid: int
    size: int


def makeUIDL(uidValidity: int, uid: int) -> str:
    """
    The unique-id of a message (RFC 1939 s7 UIDL).

    Dovecot's default ``pop3_uidl_format`` (``%08Xu%08Xv``): the UID then
    UIDVALIDITY, eight hex digits each, in lower case as Dovecot 2.3 prints
    them.  Both come from the store and never change for a message,
    whatever happens to its flags or file name, so the id is the same in
    every session; a store that reuses Dovecot's UIDs keeps the ids its
    users' POP3 clients already know.  At most 32 octets of [0-9a-f],
    within the 1-70 printable octets RFC 1939 allows.
    """
    return f"{uid:08x}{uidValidity:08x}"


class Maildrop:
    """
    The message list fixed at login (RFC 1939 s4: numbers stay the same
    for the whole session), with the deletion marks.

    A message removed meanwhile by another client (IMAP EXPUNGE) is marked
    ``gone`` when we learn of it: it is then left out of listings and
    commands naming it get ``-ERR``; the other messages are unaffected.
    """

    def __init__(self, entries, uidValidity: int):
        self.entries = [Entry(uid, size) for uid, size in entries]
        self.uidValidity = uidValidity
        self.deleted: set[int] = set()  # message numbers
        self.gone: set[int] = set()  # message numbers
        self._byUid = {e.uid: n for n, e in enumerate(self.entries, 1)}

    def __len__(self):
        return len(self.entries)

    def live(self):
        """(number, entry) of messages neither deleted nor gone."""
        for n, entry in enumerate(self.entries, 1):
            if n not in self.deleted and n not in self.gone:
                yield n, entry

    def stat(self):
        count = octets = 0
        for _, entry in self.live():
            count += 1
            octets += entry.size
        return count, octets

    def lookup(self, arg: bytes):
        """
        @return: ``(number, entry)``.
        @raise CommandError: bad number, no such message, deleted or gone.
        """
        n = parseNumber(arg)
        if n is None:
            raise CommandError("Bad message number: expected a positive decimal number")
        if not 1 <= n <= len(self.entries):
            raise CommandError(f"No such message (there are {len(self.entries)})")
        if n in self.deleted:
            raise CommandError(f"Message {n} is already deleted")
        if n in self.gone:
            raise CommandError(f"Message {n} was removed by another client")
        return n, self.entries[n - 1]

    def uidl(self, entry: Entry) -> str:
        return makeUIDL(self.uidValidity, entry.uid)

    def markGone(self, uids):
        """Messages removed by someone else; returns how many were ours."""
        count = 0
        for uid in uids:
            n = self._byUid.get(uid)
            if n is not None and n not in self.gone:
                self.gone.add(n)
                count += 1
        return count

    def deletedUids(self):
        return sorted(self.entries[n - 1].uid for n in self.deleted if n not in self.gone)


# Effects: the shared ones (mailnet.effects) and POP3's own


@dataclasses.dataclass(slots=True)
class OpenMaildrop(Effect):
    """
    After a good login: take the per-user maildrop lock, open INBOX as a
    snapshot; the outcome goes to :meth:`POP3Session.completed`: a
    :class:`Maildrop`, ``"in-use"`` (another POP3 session holds the lock) or
    ``"temp"`` (the store failed).  The runner gives the account back
    (``logout``) when it does not keep it.
    """

    username: str
    account: object
    logout: object


@dataclasses.dataclass(slots=True)
class Retrieve(Effect):
    """
    Send message ``number`` (store ``uid``): open it, then either call
    :meth:`POP3Session.retrieveFailed` (gone) or send ``header`` and the
    dot-stuffed message (all of it, or for TOP the header section and
    ``bodyLines`` lines of the body) and the terminating ``.``.  The
    streaming and the ``\\Seen`` flag of a retrieved message are the
    runner's business.
    """

    number: int
    uid: int
    header: bytes
    bodyLines: int | None = None  # None: RETR

    @property
    def isRetr(self):
        return self.bodyLines is None


@dataclasses.dataclass(slots=True)
class Update(Effect):
    """
    RFC 1939 s6: the UPDATE state.  Remove ``uids`` durably, then call
    :meth:`POP3Session.updateDone` with the count removed (None: failed).
    """

    uids: list


# The session


@dataclasses.dataclass
class POP3Settings:
    """
    What a session may offer.

    @ivar secure: TLS is on (pop3s, or after STLS).
    @ivar tlsAvailable: STLS can be offered.
    @ivar allowPlaintext: passwords are accepted without TLS.
    @ivar maxAuthFailures: failed logins before the connection is closed.
    @ivar hostname: for the greeting.
    @ivar maxLine: longest command line, CRLF included (RFC 2449 s4: 255).
    """

    secure: bool = False
    tlsAvailable: bool = True
    allowPlaintext: bool = False
    maxAuthFailures: int = 5
    hostname: str = "localhost"
    implementation: str = "mailnet"
    maxLine: int = MAX_COMMAND_LINE


class POP3Session:
    """
    One POP3 session's state machine.

    ``receive(line)`` and :meth:`completed` return lists of effects.  While
    a long effect (Login, OpenMaildrop, Retrieve, Update) is outstanding the
    runner feeds no more lines (commands are handled strictly in order:
    RFC 2449 s6.6 PIPELINING).
    """

    def __init__(self, settings: POP3Settings):
        self.settings = settings
        self.state = State.AUTHORIZATION
        self.user: str | None = None  # from USER, waiting for PASS
        self.saslPending = False  # waiting for the answer to "+ "
        self.authFailures = 0
        self.maildrop: Maildrop | None = None
        self.username: str | None = None  # once logged in

    # Facts for the I/O layer

    @property
    def lineLimit(self) -> int:
        return max(MAX_SASL_LINE, self.settings.maxLine) if self.saslPending else self.settings.maxLine

    @property
    def secure(self) -> bool:
        return self.settings.secure

    @property
    def mayLogin(self) -> bool:
        """RFC 2595 s2.1 / [auth] allow_plaintext: passwords only over TLS."""
        return self.settings.secure or self.settings.allowPlaintext

    def greeting(self) -> bytes:
        # RFC 1939 s4: the greeting is a positive response.  No APOP
        # timestamp: APOP is not offered.
        return ok(f"{self.settings.hostname} POP3 server ready")

    def capabilities(self) -> list[bytes]:
        """RFC 2449 s5/s6 CAPA (the same list in both states, s5)."""
        caps = [b"TOP", b"UIDL"]
        if self.mayLogin:
            caps += [b"USER", b"SASL PLAIN"]
        caps += [b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        # RFC 2595 s4: STLS is not announced once TLS is on.
        if not self.settings.secure and self.settings.tlsAvailable:
            caps.append(b"STLS")
        caps.append(b"IMPLEMENTATION " + self.settings.implementation.encode())
        return caps

    # Input

    def overlong(self) -> list[Effect]:
        if self.saslPending:
            self.saslPending = False
            return [Send(err("Authentication response too long; authentication cancelled"))]
        return [Send(err(f"Command line too long (limit {self.settings.maxLine} octets, RFC 2449 s4)"))]

    def receive(self, line: bytes) -> list[Effect]:
        if self.state in (State.UPDATE, State.CLOSED):
            return []
        if self.saslPending:
            return self._saslResponse(line)
        try:
            command = parseCommand(line)
        except CommandError as e:
            return [Send(err(str(e)))]
        entry = COMMANDS.get(command.name)
        if entry is None:
            return [Send(err("Unknown command"))]
        states, name = entry
        if self.state not in states:
            if self.state is State.AUTHORIZATION:
                return [Send(err("Not logged in yet; log in first"))]
            return [Send(err("Already logged in"))]
        handler = getattr(self, name)
        try:
            return handler(command)
        except CommandError as e:
            return [Send(err(str(e)))]

    # Any state

    def cmdCapa(self, command):
        return [Send(multiline(ok("Capability list follows"), self.capabilities()))]

    def cmdNoop(self, command):
        # RFC 1939 lists NOOP for TRANSACTION only; harmless before login.
        return [Send(ok())]

    # AUTHORIZATION

    def _plaintextRefused(self):
        # RFC 2595 s2.1 and s4; RFC 3206 s4 [AUTH]: refused by policy.
        return [Send(err("Plaintext authentication disallowed on non-secure connections; use STLS first", "AUTH"))]

    def cmdQuit(self, command):
        if self.state is State.TRANSACTION:
            # RFC 1939 s6: enter UPDATE; remove the marked messages.
            self.state = State.UPDATE
            return [Update(self.maildrop.deletedUids())]
        # RFC 1939 s4: QUIT in AUTHORIZATION ends the session, nothing removed.
        self.state = State.CLOSED
        return [Send(ok("Bye")), Close()]

    def cmdStls(self, command):
        if self.state is State.TRANSACTION:
            return [Send(err("STLS is only allowed before login"))]
        if self.settings.secure:
            return [Send(err("TLS is already active"))]
        if not self.settings.tlsAvailable:
            return [Send(err("TLS is not available"))]
        if command.args:
            return [Send(err("STLS takes no argument"))]
        return [Send(ok("Begin TLS negotiation")), StartTLS()]

    def tlsStarted(self):
        """
        RFC 2595 s4: once TLS is on, forget what the client told us before
        (the USER name, a pending SASL exchange).  The caller has already
        dropped the buffered input.
        """
        self.settings = dataclasses.replace(self.settings, secure=True)
        self.user = None
        self.saslPending = False
        self.state = State.AUTHORIZATION
        return []

    def cmdUser(self, command):
        if not self.mayLogin:
            return self._plaintextRefused()
        if len(command.args) != 1:
            raise CommandError("USER takes one argument: the user name")
        try:
            name = command.args[0].decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError("User name is not valid UTF-8")
        self.user = name
        return [Send(ok("Send PASS"))]

    def cmdPass(self, command):
        if not self.mayLogin:
            return self._plaintextRefused()
        if self.user is None:
            raise CommandError("Send USER first")
        if not command.rest:
            raise CommandError("PASS takes one argument: the password")
        user, self.user = self.user, None
        return [Login(user, command.rest)]

    def cmdApop(self, command):
        return [Send(err("APOP is not supported; use USER/PASS or AUTH PLAIN over TLS"))]

    def cmdAuth(self, command):
        if not command.args:
            # RFC 1734 style listing, still expected by some clients.
            mechanisms = [b"PLAIN"] if self.mayLogin else []
            return [Send(multiline(ok("Supported SASL mechanisms follow"), mechanisms))]
        mechanism = command.args[0].upper()
        if mechanism != b"PLAIN":
            return [Send(err("Unsupported authentication mechanism; use PLAIN"))]
        if not self.mayLogin:
            return self._plaintextRefused()
        if len(command.args) > 2:
            raise CommandError("AUTH PLAIN takes at most one initial response")
        if len(command.args) == 2:
            # RFC 5034 s4: an initial response; "=" stands for an empty one.
            return self._plain(command.args[1])
        self.saslPending = True
        # RFC 5034 s4: an empty challenge.
        return [Send(b"+ " + CRLF)]

    def _saslResponse(self, line):
        self.saslPending = False
        if line.strip() == b"*":
            # RFC 5034 s4: the client cancels with "*".
            return [Send(err("Authentication cancelled"))]
        return self._plain(line.strip())

    def _plain(self, response: bytes):
        if response == b"=":
            response = b""
        try:
            decoded = base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            return [Send(err("Invalid base64 in the AUTH response"))]
        # RFC 4616 s2: [authzid] NUL authcid NUL passwd
        parts = decoded.split(b"\0")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            return [Send(err("Malformed PLAIN response: expected authzid NUL authcid NUL password"))]
        try:
            authzid = parts[0].decode("utf-8")
            authcid = parts[1].decode("utf-8")
        except UnicodeDecodeError:
            return [Send(err("PLAIN identities must be UTF-8"))]
        return [Login(authcid, parts[2], authzid)]

    def completed(self, effect, outcome) -> list[Effect]:
        """
        The outcome of a long effect (:mod:`mailnet.effects`):

        * :class:`Login`: a :class:`LoginOk` (then open the maildrop) or a
          :class:`LoginError`;
        * :class:`OpenMaildrop`: the :class:`Maildrop`, ``"in-use"`` or
          ``"temp"``;
        * :class:`Retrieve`: None (sent), ``"gone"`` (expunged meanwhile) or
          ``"failed"`` (a store error);
        * :class:`Update`: the number of messages removed, or None (failed).
        """
        if isinstance(effect, Retrieve):
            return [] if outcome is None else self.retrieveFailed(effect, outcome == "gone")
        if isinstance(effect, Login):
            if isinstance(outcome, LoginOk):
                return [OpenMaildrop(outcome.avatar.username, outcome.avatar, outcome.logout)]
            return self.loginFailed("temp" if outcome.temporary else "auth")
        if isinstance(effect, OpenMaildrop):
            if isinstance(outcome, Maildrop):
                return self.loginDone(effect.username, outcome)
            return self.loginFailed(outcome)
        if isinstance(effect, Update):
            return self.updateDone(outcome)
        raise TypeError(f"no outcome expected for {effect!r}")

    def loginFailed(self, reason: str) -> list[Effect]:
        """
        The login did not happen.

        @param reason: ``"auth"`` (bad credentials: counts towards the
            limit), ``"in-use"`` (another POP3 session holds the maildrop),
            or ``"temp"`` (the store failed).
        """
        if reason == "in-use":
            # RFC 2449 s8.1.1 [IN-USE]; RFC 1939 s4: stay in AUTHORIZATION.
            return [Send(err("Mailbox is in use by another POP3 session", "IN-USE"))]
        if reason == "temp":
            return [Send(err("Cannot open the mailbox now; try again later", "SYS/TEMP"))]
        self.authFailures += 1
        if self.authFailures >= self.settings.maxAuthFailures:
            self.state = State.CLOSED
            return [Send(err("Authentication failed; too many failures, closing the connection", "AUTH")), Close()]
        # RFC 3206 s4 / RFC 5034 s6: [AUTH] when the credentials are wrong.
        return [Send(err("Authentication failed", "AUTH"))]

    def loginDone(self, username: str, maildrop: Maildrop) -> list[Effect]:
        self.username = username
        self.maildrop = maildrop
        self.user = None
        self.state = State.TRANSACTION
        count, octets = maildrop.stat()
        return [Send(ok(f"Logged in; {count} messages ({octets} octets)"))]

    # TRANSACTION (RFC 1939 s5)

    def cmdStat(self, command):
        count, octets = self.maildrop.stat()
        return [Send(ok(f"{count} {octets}"))]

    def cmdList(self, command):
        return self._listing(command, lambda entry: str(entry.size))

    def cmdUidl(self, command):
        return self._listing(command, self.maildrop.uidl)

    def _listing(self, command, value):
        if len(command.args) > 1:
            raise CommandError(f"{command.name} takes at most one message number")
        if command.args:
            n, entry = self.maildrop.lookup(command.args[0])
            return [Send(ok(f"{n} {value(entry)}"))]
        lines = [f"{n} {value(entry)}".encode() for n, entry in self.maildrop.live()]
        count, octets = self.maildrop.stat()
        return [Send(multiline(ok(f"{count} messages ({octets} octets)"), lines))]

    def cmdRetr(self, command):
        if len(command.args) != 1:
            raise CommandError("RETR takes one message number")
        n, entry = self.maildrop.lookup(command.args[0])
        return [Retrieve(n, entry.uid, ok(f"{entry.size} octets"))]

    def cmdTop(self, command):
        if len(command.args) != 2:
            raise CommandError("TOP takes a message number and a number of lines")
        n, entry = self.maildrop.lookup(command.args[0])
        lines = parseNumber(command.args[1])
        if lines is None:
            raise CommandError("Bad number of lines: expected a non-negative decimal number")
        return [Retrieve(n, entry.uid, ok("Top of message follows"), lines)]

    def retrieveFailed(self, retrieve: Retrieve, gone: bool) -> list[Effect]:
        """Opening the message failed: gone (expunged) or a store error."""
        if gone:
            self.maildrop.markGone([retrieve.uid])
            return [Send(err(f"Message {retrieve.number} was removed by another client"))]
        return [Send(err(f"Cannot read message {retrieve.number} now; try again later", "SYS/TEMP"))]

    def cmdDele(self, command):
        if len(command.args) != 1:
            raise CommandError("DELE takes one message number")
        n, entry = self.maildrop.lookup(command.args[0])
        self.maildrop.deleted.add(n)
        return [Send(ok(f"Message {n} deleted"))]

    def cmdRset(self, command):
        if command.args:
            raise CommandError("RSET takes no argument")
        self.maildrop.deleted.clear()
        count, octets = self.maildrop.stat()
        return [Send(ok(f"Maildrop has {count} messages ({octets} octets)"))]

    def updateDone(self, removed: int | None) -> list[Effect]:
        """
        @param removed: how many messages were removed, or None if removing
            failed (RFC 1939 s6: then ``-ERR some deleted messages not
            removed``).
        """
        self.state = State.CLOSED
        if removed is None:
            return [Send(err("Some deleted messages were not removed; try again later", "SYS/TEMP")), Close()]
        count = len(self.maildrop) - len(self.maildrop.gone) - removed
        return [Send(ok(f"Bye; {removed} messages deleted, {max(count, 0)} left")), Close()]

    def upcomingMessages(self, lines) -> list[int]:
        """
        UIDs that RETR or TOP commands among ``lines`` (pipelined, not yet
        handled) will ask for, so that the caller can open them ahead.
        Only a guess: nothing here changes the session.
        """
        if self.state is not State.TRANSACTION or self.saslPending:
            return []
        uids = []
        for line in lines:
            head = line[:5].upper()
            if head == b"RETR ":
                arg = line[5:]
            elif head[:4] == b"TOP ":
                arg = line[4:].lstrip(b" ").split(b" ", 1)[0]
            else:
                continue
            try:
                _, entry = self.maildrop.lookup(arg.strip(b" "))
            except CommandError:
                continue
            uids.append(entry.uid)
        return uids

    def messagesGone(self, uids):
        """Another client removed messages (store listener)."""
        if self.maildrop is not None:
            self.maildrop.markGone(uids)


_BEFORE = (State.AUTHORIZATION,)
_AFTER = (State.TRANSACTION,)
_EITHER = (State.AUTHORIZATION, State.TRANSACTION)

# The commands: keyword -> (states it is allowed in, POP3Session method).
# In another state the answer is "log in first" or "already logged in".
COMMANDS = {
    "CAPA": (_EITHER, "cmdCapa"),
    "NOOP": (_EITHER, "cmdNoop"),
    "QUIT": (_EITHER, "cmdQuit"),
    "STLS": (_EITHER, "cmdStls"),
    "USER": (_BEFORE, "cmdUser"),
    "PASS": (_BEFORE, "cmdPass"),
    "APOP": (_BEFORE, "cmdApop"),
    "AUTH": (_BEFORE, "cmdAuth"),
    "STAT": (_AFTER, "cmdStat"),
    "LIST": (_AFTER, "cmdList"),
    "UIDL": (_AFTER, "cmdUidl"),
    "RETR": (_AFTER, "cmdRetr"),
    "TOP": (_AFTER, "cmdTop"),
    "DELE": (_AFTER, "cmdDele"),
    "RSET": (_AFTER, "cmdRset"),
}


# Message bodies


def topChunks(f, bodyLines: int, chunkSize: int = 65536):
    """
    Yield the raw (unstuffed) bytes TOP sends (RFC 1939 s7): the header
    section, the blank line after it, and the first ``bodyLines`` lines of
    the body, read from the binary file ``f`` without holding more than
    ``chunkSize`` bytes of it.  A message without a blank line is all header.
    """
    start = b""  # the current line's first bytes (a line may come in pieces)
    # Header section, up to and including the blank line.
    while True:
        piece = f.readline(chunkSize)
        if not piece:
            return
        yield piece
        start = (start + piece)[:3]
        if piece.endswith(b"\n"):
            if start in (b"\r\n", b"\n"):
                break
            start = b""
    left = bodyLines
    while left > 0:
        piece = f.readline(chunkSize)
        if not piece:
            return
        yield piece
        if piece.endswith(b"\n"):
            left -= 1
