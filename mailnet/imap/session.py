"""
The IMAP session: one per connection, a state machine over the parsed
commands (RFC 3501 s3 / RFC 9051 s3: not authenticated, authenticated,
selected, logout).

The session owns no sockets.  It is given bytes (:meth:`Session.feed`) and
talks back through a small *output* object (the Twisted protocol in
:mod:`mailnet.imap.server`, or a test double) with ``write``, ``drained``
(a Deferred while the transport wants us to wait, else None), ``startTLS``,
``close``, ``pauseReading`` / ``resumeReading``, and the attributes
``secure`` and ``peer``.

Commands are executed strictly in order, one at a time (RFC 3501 s5.5
allows some concurrency; in-order is simplest and correct).  The next
command is not even parsed until the previous one has finished, so
pipelined bytes after STARTTLS are still raw in the reader when TLS starts,
and are dropped (RFC 3207 s4.2 / RFC 9051 s11.1: nothing from before the
handshake is trusted).
"""

from __future__ import annotations

import base64
import binascii
import errno
import io
import os

from twisted.internet import defer, task
from twisted.python.failure import Failure

from mailnet.deadline import Deadlines
from mailnet.imap import fetch, search, serialize
from mailnet.imap.mailbox import SelectedMailbox
from mailnet.imap.parser import (
    CommandReader,
    FetchAtt,
    Frame,
    FrameError,
    NeedContinuation,
    ParseError,
    RawLine,
    parseCommand,
)
from mailnet.login import LoginAbandoned, LoginBusy, LoginFailed, LoginSequence
from mailnet.logs import Logger
from mailnet.store.interfaces import (
    DELETED,
    INBOX,
    SEEN,
    FolderExists,
    FolderLimitExceeded,
    IAccount,
    InvalidFolderName,
    NoSuchFolder,
    NoSuchMessage,
    StorageFull,
    StoreError,
    TemporaryStoreError,
)

log = Logger()

NOT_AUTHENTICATED, AUTHENTICATED, SELECTED, LOGOUT = "not authenticated", "authenticated", "selected", "logout"

# Literal bodies up to this size are read whole and written in one piece;
# larger ones are streamed in chunks, waiting for the transport to drain.
INLINE_LITERAL = 256 * 1024
STREAM_CHUNK = 64 * 1024
# SEARCH reads and matches this many messages per worker-thread call, or
# fewer when they add up to SEARCH_BATCH_BYTES (a store may hand over small
# messages already read into memory).
SEARCH_BATCH = 64
SEARCH_BATCH_BYTES = 1024 * 1024
# FETCH responses are written in batches of this many bytes.
BATCH_BYTES = 256 * 1024
# A FETCH that has worked this long (seconds) without waiting for anything
# lets other sessions have the reactor before it goes on.  (A store that
# opens messages synchronously, and a client that reads as fast as we
# write, would otherwise keep it for the whole command.)
FETCH_TURN = 0.02
# Commands that may not be interrupted by EXPUNGE (RFC 3501 s7.4.1).
_NO_EXPUNGE = {"FETCH", "STORE", "SEARCH"}
# RFC 2180 s4.1.2, RFC 5530 s3: a FETCH or STORE by sequence number names a
# message expunged meanwhile, which may not be announced during it.
_GONE = ("NO", "Some of the requested messages no longer exist", b"EXPUNGEISSUED")
_PREFLUSH = {"NOOP", "CHECK", "COPY", "MOVE", "EXPUNGE", "STATUS", "LIST", "APPEND"}
# Before login the autologout timer is shorter (RFC 9051 s5.4 allows it).
PREAUTH_TIMEOUT = 120
# Largest literal accepted before login.
PREAUTH_LITERAL = 8192

_CONTENT_ATTS = {"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]", "BINARY[]",
                 "BINARY.SIZE"}
_STRUCTURE_ATTS = {"BODY", "BODYSTRUCTURE"}


class Settings:
    """What a session needs to know of the configuration (from ``[limits]`` / ``[auth]``)."""

    def __init__(self, config=None, **overrides):
        limits = config.limits if config is not None else None
        self.maxLine = limits.imap_line_length if limits else 65536
        self.maxLiteral = limits.imap_literal_size if limits else 35 * 1024 * 1024
        self.messageSize = limits.message_size if limits else 35 * 1024 * 1024
        self.idleTimeout = limits.imap_idle_timeout if limits else 1800
        self.idlePoll = getattr(limits, "imap_idle_poll", 2.0) if limits else 2.0
        self.connectionsPerUser = limits.imap_connections_per_user if limits else 20
        self.authFailures = limits.auth_failures if limits else 5
        # Deadlines that bytes do not extend (slowloris; mailnet.deadline).
        self.commandDeadline = limits.command_deadline if limits else 60
        self.loginDeadline = limits.login_deadline if limits else 180
        self.minDataRate = limits.min_data_rate if limits else 500
        # MIME structure caps (fetch.MAX_PARTS: beyond them a message is shown flatter).
        self.mimeParts = getattr(limits, "mime_parts", fetch.MAX_PARTS) if limits else fetch.MAX_PARTS
        self.mimeDepth = getattr(limits, "mime_depth", fetch.MAX_DEPTH) if limits else fetch.MAX_DEPTH
        self.allowPlaintext = config.auth.allow_plaintext if config is not None else False
        self.hostname = config.server.hostname if config is not None else "localhost"
        # Recently used folders stay open this long (seconds), at most this many.
        self.folderLinger = 300.0
        self.folderKeep = 100
        self.__dict__.update(overrides)


class Shared:
    """
    Server-wide state every session of a factory shares.

    @ivar portal: twisted.cred portal (avatars: the store's IAccount).
    @ivar throttle: :class:`mailnet.login.AuthThrottle`.
    @ivar login: :class:`mailnet.login.LoginSequence` (made from the portal
        and the throttle when not given).
    @ivar tlsAvailable: whether STARTTLS can be offered.
    @ivar clock: the reactor (callLater, seconds).
    """

    def __init__(self, settings, portal, throttle, clock, tlsAvailable=True, inThread=None, login=None):
        from mailnet.imap.mailbox import FolderKeeper, RecentRegistry

        if inThread is None:
            from twisted.internet import threads

            def inThread(f, *args):
                return threads.deferToThreadPool(clock, clock.getThreadPool(), f, *args)

        # inThread(f, *args) -> Deferred: run blocking work (SEARCH reads) off the reactor.
        self.inThread = inThread

        self.settings = settings
        self.portal = portal
        self.throttle = throttle
        self.login = login or LoginSequence(portal, throttle, clock)
        self.clock = clock
        self.tlsAvailable = tlsAvailable
        self.structures = fetch.StructureCache()
        self.recent = RecentRegistry()
        self.userSessions = {}
        self.sessions = set()
        self.keeper = FolderKeeper(clock, settings.folderLinger, settings.folderKeep)


class CommandError(Exception):
    """End a command with a tagged NO or BAD: ``CommandError("NO", "text", b"CODE")``."""

    def __init__(self, kind, text, code=None):
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.code = code


def no(text, code=None):
    return CommandError("NO", text, code)


def bad(text, code=None):
    return CommandError("BAD", text, code)


class Session:
    """One IMAP connection's state machine (see the module docstring)."""

    def __init__(self, shared: Shared, out, implicitTLS=False):
        self.shared = shared
        self.settings = s = shared.settings
        self.out = out
        self.clock = shared.clock
        # Before login, literals only carry names and passwords: keep them
        # small so that strangers cannot make us spool large files.
        self.reader = CommandReader(maxLine=s.maxLine, maxLiteral=min(s.maxLiteral, PREAUTH_LITERAL))
        self.state = NOT_AUTHENTICATED
        self.account = None
        self.logout = None
        self.username = None
        self.view = None
        self.rev2 = False
        self.condstore = False
        self.qresync = False
        self.busy = False
        self.closed = False
        self.idling = False
        self.authFailures = 0
        self._pumping = False
        self._waitedAt = 0.0  # when drain() last had to wait for the client
        self._lineWaiter = None
        self._readingPaused = False
        self._flushCall = None
        self._idlePoll = None
        self._timer = None
        self._current = None
        self._lost = False
        self.deadlines = Deadlines(self.clock, self._deadlinePassed)
        shared.sessions.add(self)

    # Life cycle

    def start(self):
        """Send the greeting (RFC 3501 s7.1.1)."""
        self._resetTimer()
        # log in within loginDeadline of connecting, however busy the client
        self.deadlines.start("login", self.settings.loginDeadline)
        self.send(b"* OK [CAPABILITY " + self.capabilities() + b"] " + self.settings.hostname.encode("ascii", "replace")
                  + b" mailnet IMAP ready\r\n")

    def connectionLost(self):
        if self._lost:
            return
        self._lost = True
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.deadlines.cancel()
        self._stopIdle()
        self._deselect()
        if self.username is not None:
            left = self.shared.userSessions.get(self.username, 1) - 1
            if left > 0:
                self.shared.userSessions[self.username] = left
            else:
                self.shared.userSessions.pop(self.username, None)
            self.username = None
        if self.logout is not None:
            logout, self.logout = self.logout, None
            try:
                logout()
            except Exception:
                log.failure("IMAP avatar logout failed")
        self.reader.clear()
        self.shared.sessions.discard(self)
        if self._lineWaiter is not None:
            waiter, self._lineWaiter = self._lineWaiter, None
            waiter.errback(Failure(ConnectionError("connection lost")))

    def _resetTimer(self):
        timeout = self.settings.idleTimeout if self.state != NOT_AUTHENTICATED else min(self.settings.idleTimeout, PREAUTH_TIMEOUT)
        if self._timer is not None and self._timer.active():
            self._timer.reset(timeout)
        else:
            self._timer = self.clock.callLater(timeout, self._timedOut)

    def _timedOut(self):
        self._timer = None
        if self.busy and not self.idling and not self.closed:
            # A long command (a big FETCH to a slow client) is still going.
            self._resetTimer()
            return
        if not self.closed:
            log.info("imap: {peer}: autologout after {n}s without a command", peer=self.out.peer,
                     n=self.settings.idleTimeout)
            self.send(b"* BYE Autologout; idle for too long\r\n")
            self._close()

    # Deadlines (slowloris): a command, with its literals, must end within
    # commandDeadline of its first byte plus 1 s per minDataRate bytes
    # received; a login within loginDeadline of connecting.  Idle timeouts
    # after login (IDLE's 30 minutes included) are the timer above.

    def _commandInProgress(self):
        reader = self.reader
        if self._lineWaiter is not None:  # IDLE's DONE, a SASL response
            return reader.buffered() > 0
        # not busy: every whole command has been taken, what is left is partial
        return not self.busy and (reader.midCommand or reader.buffered() > 0)

    def _watchDeadlines(self):
        deadlines = self.deadlines
        if self.closed:
            deadlines.cancel()
            return
        if self._commandInProgress():
            deadlines.start("command", self.settings.commandDeadline, rate=self.settings.minDataRate)
        else:
            deadlines.stop("command")
        if self.state != NOT_AUTHENTICATED:
            deadlines.stop("login")

    def _deadlinePassed(self, name):
        if self.closed:
            return True
        if self.busy and self._lineWaiter is None:
            return False  # we are working (a password check): not the client's fault
        if name == "login":
            seconds, text = self.settings.loginDeadline, b"no login within %d seconds" % self.settings.loginDeadline
        else:
            seconds, text = self.settings.commandDeadline, b"command not completed in time"
        log.info("imap: {peer}: {name} deadline passed ({s} s), closing", peer=self.out.peer, name=name, s=seconds)
        self.send(b"* BYE Autologout; " + text + b"\r\n")
        self._close()
        return True

    def _close(self):
        if not self.closed:
            self.closed = True
            self.out.close()

    # Output

    def send(self, data):
        if not self.closed:
            self.out.write(data)

    def sendLines(self, lines):
        if lines and not self.closed:
            self.out.write(b"".join(lines))

    def sendPieces(self, pieces):
        """Write a few (large) pieces without joining them."""
        if pieces and not self.closed:
            self.out.writeSequence(pieces)

    def tagged(self, tag, kind, text, code=None):
        line = tag.encode("ascii") + b" " + kind.encode("ascii") + b" "
        if code:
            line += b"[" + code + b"] "
        self.send(line + text.encode("utf-8", "replace") + b"\r\n")

    async def drain(self):
        d = self.out.drained()
        if d is not None:
            await d
            self._waitedAt = self.clock.seconds()

    # Input

    def feed(self, data):
        """Bytes from the client."""
        if self.closed:
            return
        self._resetTimer()
        self.reader.feed(data)
        self.deadlines.received(len(data))
        self.pump()

    def pump(self):
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self.closed:
                if self.busy and self._lineWaiter is None:
                    break
                event = self.reader.next()
                if event is None:
                    break
                self._handle(event)
        finally:
            self._pumping = False
        # Flow control: while a command runs, do not buffer without bound.
        if not self.closed:
            if self.busy and self.reader.buffered() > self.settings.maxLine + 65536:
                if not self._readingPaused:
                    self._readingPaused = True
                    self.out.pauseReading()
            elif self._readingPaused:
                self._readingPaused = False
                self.out.resumeReading()
        self._watchDeadlines()

    def _handle(self, event):
        if isinstance(event, RawLine):
            waiter, self._lineWaiter = self._lineWaiter, None
            self.reader.raw = False
            if waiter is not None:
                waiter.callback(event.line)
            return
        if isinstance(event, NeedContinuation):
            # RFC 3501 s7.5: ready for the literal.
            self.send(b"+ Ready for literal data\r\n")
            return
        if isinstance(event, FrameError):
            if event.fatal:
                code = b"[" + event.code + b"] " if event.code else b""
                self.send(b"* BYE " + code + event.text.encode() + b"\r\n")
                self._close()
                return
            code = b"[" + event.code + b"] " if event.code else b""
            if event.tag:
                self.send(event.tag.encode("ascii") + b" BAD " + code + event.text.encode() + b"\r\n")
            else:
                self.send(b"* BAD " + code + event.text.encode() + b"\r\n")
            return
        if isinstance(event, Frame):
            try:
                command = parseCommand(event)
            except ParseError as e:
                what = ("Error in IMAP command %s: " % e.name) if e.name else ""
                code = b"[" + e.code + b"] " if e.code else b""
                if e.tag:
                    self.send(e.tag.encode("ascii") + b" BAD " + code + (what + str(e)).encode("utf-8", "replace") + b"\r\n")
                else:
                    self.send(b"* BAD " + code + (what + str(e)).encode("utf-8", "replace") + b"\r\n")
                return
            self._start(command)

    def _start(self, command):
        self.busy = True
        self._current = command
        d = defer.ensureDeferred(self._run(command))
        d.addBoth(self._finished, command)

    def _finished(self, result, command):
        command.close()
        self._current = None
        self.busy = False
        if isinstance(result, Failure):
            log.failure("imap: command {name} failed", result, name=command.name)
        if not self.closed:
            self.pump()

    def readLine(self):
        """A Deferred firing with the client's next raw line (IDLE's DONE, SASL responses)."""
        self.reader.raw = True
        self._lineWaiter = d = defer.Deferred()
        return d

    # Dispatch

    async def _run(self, cmd):
        handler = _HANDLERS.get(cmd.name)
        if handler is None:
            self.tagged(cmd.tag, "BAD", "Unknown command")
            return
        states, method = handler
        if self.state not in states:
            if self.state == NOT_AUTHENTICATED:
                text = "Command %s needs authentication first" % cmd.name
            elif self.state == AUTHENTICATED and SELECTED in states:
                text = "Command %s needs a selected mailbox" % cmd.name
            else:
                text = "Command %s is not valid in this state" % cmd.name
            self.tagged(cmd.tag, "BAD", text)
            return
        try:
            if self.view is not None and cmd.name not in ("LOGOUT", "CAPABILITY", "ID", "IDLE"):
                # Pick up changes other programs made (Maildir) before answering.
                try:
                    await self.view.folder.refresh()
                except NoSuchFolder:
                    # Another session deleted the selected mailbox.
                    self._deselect()
                    self.state = AUTHENTICATED
                    if cmd.name in ("UNSELECT", "CLOSE"):
                        self.tagged(cmd.tag, "OK", "%s completed (the mailbox was deleted meanwhile)" % cmd.name)
                        return
                    if cmd.name not in ("SELECT", "EXAMINE"):
                        self.send(b"* BYE Selected mailbox was deleted, have to disconnect\r\n")
                        self._close()
                        return
                if cmd.uid or cmd.name in _PREFLUSH:
                    # Tell of expunges first where they may be told, so the
                    # answer is about the mailbox as it is.
                    self._flush(cmd)
            result = await method(self, cmd)
        except CommandError as e:
            self._flush(cmd)
            self.tagged(cmd.tag, e.kind, e.text, e.code)
            return
        except NoSuchFolder as e:
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Mailbox does not exist: %s" % _reason(e), b"NONEXISTENT")
            return
        except InvalidFolderName as e:
            # The store refuses names that could leave the account ("..", "/x", NUL).
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Invalid mailbox name: %s" % _reason(e), b"CANNOT")
            return
        except FolderExists:
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Mailbox exists already", b"ALREADYEXISTS")
            return
        except FolderLimitExceeded as e:
            # RFC 5530 s3 LIMIT: an implementation limit (count, length, depth).
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Cannot do that: %s" % _reason(e), b"LIMIT")
            return
        except StorageFull:
            # RFC 5530 s3 OVERQUOTA: the disk under the store is full.
            self._flush(cmd)
            log.warn("imap: {user}: {name} failed: mail storage is full", user=self.username, name=cmd.name)
            self.tagged(cmd.tag, "NO", "Mail storage is full, please try again later", b"OVERQUOTA")
            return
        except TemporaryStoreError as e:
            self._flush(cmd)
            log.warn("imap: {user}: temporary store error in {name}: {e}", user=self.username, name=cmd.name, e=str(e))
            self.tagged(cmd.tag, "NO", "Temporary failure, please try again", b"UNAVAILABLE")
            return
        except StoreError as e:
            self._flush(cmd)
            log.warn("imap: {user}: store error in {name}: {e!r}", user=self.username, name=cmd.name, e=e)
            self.tagged(cmd.tag, "NO", "Cannot do that: %s" % _reason(e), b"SERVERBUG")
            return
        except ConnectionError:
            return
        except OSError as e:
            # The store's disk failed (full, over quota, I/O error): a
            # temporary condition, not a bug.  RFC 5530 s3: OVERQUOTA when
            # the disk or quota is full, else UNAVAILABLE.  One log line,
            # without the path (nor in the answer).
            self._flush(cmd)
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            log.warn(
                "imap: {user}: {name} failed: store I/O error {err} ({text})",
                user=self.username,
                name=cmd.name,
                err=errno.errorcode.get(e.errno, e.errno),
                text=e.strerror or type(e).__name__,
            )
            if not self.closed:
                if full:
                    self.tagged(cmd.tag, "NO", "Mail storage is full, please try again later", b"OVERQUOTA")
                else:
                    self.tagged(cmd.tag, "NO", "Temporary storage failure, please try again", b"UNAVAILABLE")
            return
        except Exception:
            log.failure("imap: {user}: internal error in {name}", user=self.username, name=cmd.name)
            if not self.closed:
                self.tagged(cmd.tag, "NO", "Internal server error", b"SERVERBUG")
            return
        if self.closed or result is _ALREADY_ANSWERED:
            return
        self._flush(cmd)
        if result is None:
            result = ("OK", "%s completed" % cmd.name, None)
        kind, text, code = result
        self.tagged(cmd.tag, kind, text, code)

    def _flush(self, cmd=None):
        """Announce pending mailbox changes that may be announced now."""
        view = self.view
        if view is None or self.closed:
            return
        allowExpunge = cmd is None or cmd.uid or cmd.name not in _NO_EXPUNGE
        if view.hasPending(allowExpunge):
            self.sendLines(view.flush(allowExpunge, self.condstore, self.qresync, self.rev2))

    def _wake(self):
        """The store told our view of a change: in IDLE, say it at once."""
        if self.idling and self._flushCall is None:
            self._flushCall = self.clock.callLater(0, self._idleFlush)

    def _idleFlush(self):
        self._flushCall = None
        if self.idling:
            self._flush()

    # Capabilities

    def capabilities(self) -> bytes:
        caps = [b"IMAP4rev1", b"IMAP4rev2", b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"IDLE"]
        if self.state == NOT_AUTHENTICATED:
            secure = self.out.secure
            if not secure and self.shared.tlsAvailable:
                caps.append(b"STARTTLS")
            if secure or self.settings.allowPlaintext:
                caps.append(b"AUTH=PLAIN")
            else:
                caps.append(b"LOGINDISABLED")
            return b" ".join(caps)
        caps += [b"NAMESPACE", b"UIDPLUS", b"MOVE", b"UNSELECT", b"CHILDREN", b"SPECIAL-USE", b"LIST-EXTENDED",
                 b"LIST-STATUS", b"ESEARCH", b"SEARCHRES", b"CONDSTORE", b"QRESYNC", b"BINARY", b"STATUS=SIZE",
                 b"APPENDLIMIT=%d" % self.appendLimit()]
        return b" ".join(caps)

    def appendLimit(self):
        return min(self.settings.messageSize, self.settings.maxLiteral)

    # Mailbox names

    def decodeName(self, raw: bytes) -> str:
        """A mailbox name from the client: UTF-8 for IMAP4rev2, modified UTF-7 before (RFC 3501 s5.1.3)."""
        if self.rev2:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise no("Mailbox name is not valid UTF-8", b"CANNOT")
        else:
            try:
                name = serialize.decodeMailbox(raw)
            except ValueError as e:
                raise no("Mailbox name is not valid: %s" % e, b"CANNOT")
        if "\x00" in name:
            raise no("Mailbox name contains NUL", b"CANNOT")
        head, sep, rest = name.partition("/")
        if head.upper() == INBOX:
            name = INBOX + sep + rest
        return name

    def encodeName(self, name: str) -> bytes:
        if self.rev2:
            return serialize.astring(name, utf8=True)
        return serialize.astring(serialize.encodeMailbox(name))

    # Any state

    async def cmdCapability(self, cmd):
        self.send(b"* CAPABILITY " + self.capabilities() + b"\r\n")

    async def cmdNoop(self, cmd):
        pass

    async def cmdLogout(self, cmd):
        self.send(b"* BYE Logging out\r\n")
        self.tagged(cmd.tag, "OK", "LOGOUT completed")
        self.state = LOGOUT
        self._close()
        return _ALREADY_ANSWERED

    async def cmdId(self, cmd):
        # RFC 2971.  The client's values are not logged (they may identify people).
        self.send(b'* ID ("name" "mailnet" "vendor" "mailnet")\r\n')

    # Not authenticated

    async def cmdStarttls(self, cmd):
        if self.out.secure:
            raise bad("TLS is already active")
        if not self.shared.tlsAvailable:
            raise no("TLS is not available")
        self.tagged(cmd.tag, "OK", "Begin TLS negotiation now")
        # RFC 9051 s6.2.1 / RFC 3207 s4.2: everything received before the
        # handshake is discarded, along with any state learned from it.
        self.reader.clear()
        self.out.startTLS()
        return _ALREADY_ANSWERED

    def _mayLogin(self):
        return self.out.secure or self.settings.allowPlaintext

    async def cmdLogin(self, cmd):
        if not self._mayLogin():
            raise no("Plaintext login is disabled until STARTTLS", b"PRIVACYREQUIRED")
        return await self._authenticate(cmd, cmd.user, cmd.password)

    async def cmdAuthenticate(self, cmd):
        if cmd.mechanism != "PLAIN":
            raise no("Unsupported authentication mechanism %s" % cmd.mechanism[:20], b"CANNOT")
        if not self._mayLogin():
            raise no("Plaintext authentication is disabled until STARTTLS", b"PRIVACYREQUIRED")
        response = cmd.initial
        if response is None:
            # RFC 3501 s6.2.2: empty challenge.
            self.send(b"+ \r\n")
            response = await self.readLine()
            if response.strip() == b"*":
                raise bad("Authentication cancelled")
        response = response.strip()
        try:
            decoded = b"" if response == b"=" else base64.b64decode(response, validate=True)
        except (binascii.Error, ValueError):
            raise bad("Invalid base64 in SASL response")
        parts = decoded.split(b"\x00")
        if len(parts) != 3:
            raise bad("Malformed PLAIN response")
        authzid, user, password = parts
        if authzid and authzid != user:
            self.authFailures += 1
            raise no("Proxy authorization is not supported", b"AUTHORIZATIONFAILED")
        return await self._authenticate(cmd, user, password)

    async def _authenticate(self, cmd, user, password):
        try:
            username = user.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            username, secret = user.decode("utf-8", "replace"), ""  # fails in the checker, throttled like any
        peer = self.out.peer
        try:
            # The one login sequence (mailnet.login): throttle, portal, log.
            account, logout = await self.shared.login.login("imap", peer, username, secret, IAccount,
                                                            alive=lambda: not self.closed)
        except LoginAbandoned:
            return _ALREADY_ANSWERED
        except LoginBusy:
            raise no("Too many logins waiting; try again later", b"UNAVAILABLE")
        except LoginFailed:
            self.authFailures += 1
            if self.closed:
                return _ALREADY_ANSWERED
            if self.authFailures >= self.settings.authFailures:
                self.tagged(cmd.tag, "NO", "Invalid credentials", b"AUTHENTICATIONFAILED")
                self.send(b"* BYE Too many failed logins\r\n")
                self._close()
                return _ALREADY_ANSWERED
            raise no("Invalid credentials", b"AUTHENTICATIONFAILED")
        except Exception:
            # the realm or the store failed (logged by the login sequence)
            raise no("Cannot log in now; try again later", b"UNAVAILABLE")
        if self.closed:
            logout()
            return _ALREADY_ANSWERED
        name = account.username
        count = self.shared.userSessions.get(name, 0)
        if count >= self.settings.connectionsPerUser:
            logout()
            log.info("imap: {peer}: {user} has too many connections", peer=peer, user=name)
            raise no("Too many connections for this user (limit %d)" % self.settings.connectionsPerUser, b"UNAVAILABLE")
        self.shared.userSessions[name] = count + 1
        self.username = name
        self.account = account
        self.logout = logout
        self.state = AUTHENTICATED
        self.reader.maxLiteral = self.settings.maxLiteral
        self._resetTimer()
        return ("OK", "Logged in", b"CAPABILITY " + self.capabilities())

    # Authenticated

    async def cmdEnable(self, cmd):
        enabled = []
        for cap in cmd.capabilities:
            if cap == "CONDSTORE" and not self.condstore:
                self._enableCondstore()
                enabled.append(cap)
            elif cap == "QRESYNC" and not self.qresync:
                # RFC 7162 s3.2.3: QRESYNC implies CONDSTORE.
                self._enableCondstore()
                self.qresync = True
                enabled.append(cap)
            elif cap == "IMAP4REV2" and not self.rev2:
                self.rev2 = True
                enabled.append("IMAP4rev2")
        # RFC 5161 s3.2: ENABLED lists what this command newly enabled.
        self.send(b"* ENABLED" + b"".join(b" " + c.encode() for c in enabled) + b"\r\n")

    def _enableCondstore(self):
        if not self.condstore:
            self.condstore = True
            if self.view is not None:
                # RFC 7162 s3.1: enabled while selected -> tell HIGHESTMODSEQ.
                self.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.view.folder.highestModSeq)

    async def cmdNamespace(self, cmd):
        # RFC 2342: one personal namespace, "/" separated.
        self.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')

    async def cmdSelect(self, cmd):
        readOnly = cmd.name == "EXAMINE"
        name = self.decodeName(cmd.mailbox)
        if cmd.qresync is not None and not self.qresync:
            raise bad("QRESYNC parameter requires ENABLE QRESYNC first")
        if self.view is not None:
            self._deselect()
            self.state = AUTHENTICATED
            if self.qresync or self.rev2:
                # RFC 7162 s3.2.11 / RFC 9051 s7.1: the old mailbox is closed.
                self.send(b"* OK [CLOSED] Previous mailbox closed\r\n")
        if cmd.condstore:
            self._enableCondstore()
        folder = await self.account.openFolder(name)
        try:
            await folder.refresh()
        except Exception:
            folder.close()
            raise
        key = (self.username, folder.name)
        keeper = self.shared.keeper
        keeper.touch(key, self.account, folder.name)
        snapshot = keeper.snapshot(key, folder)
        view = SelectedMailbox(folder, folder.name, readOnly, key, self.shared.recent, self._wake, snapshot)
        if snapshot is None:
            keeper.remember(key, view.snapshot)
        if self.rev2:
            view.showRecent = False  # RFC 9051 has no \Recent
        self.view = view
        self.state = SELECTED
        out = [
            b"* FLAGS " + view.flagsList() + b"\r\n",
            b"* %d EXISTS\r\n" % len(view),
        ]
        if not self.rev2:
            out.append(b"* %d RECENT\r\n" % len(view.recent))
            if view.firstUnseen is not None:
                out.append(b"* OK [UNSEEN %d] First unseen\r\n" % view.firstUnseen)
        out += [
            b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % folder.uidValidity,
            b"* OK [UIDNEXT %d] Predicted next UID\r\n" % folder.uidNext,
            b"* OK [PERMANENTFLAGS " + view.permanentFlags() + b"] Flags permitted\r\n",
            b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % folder.highestModSeq,
        ]
        if self.rev2:
            # RFC 9051 s6.3.2: a LIST response with the mailbox name.
            attrs = await self._attributesOf(folder.name)
            out.append(b"* LIST (" + b" ".join(attrs) + b') "/" ' + self.encodeName(folder.name) + b"\r\n")
        self.sendLines(out)
        if cmd.qresync is not None:
            await self._qresyncSelect(view, cmd.qresync)
        return ("OK", "%s completed" % cmd.name, b"READ-ONLY" if readOnly else b"READ-WRITE")

    async def _attributesOf(self, name):
        folders = await self.account.listFolders()
        attrs = []
        children = any(f.name.startswith(name + "/") for f in folders)
        attrs.append(b"\\HasChildren" if children else b"\\HasNoChildren")
        for f in folders:
            if f.name == name and f.specialUse:
                attrs.append(f.specialUse.encode())
        return attrs

    async def _qresyncSelect(self, view, params):
        # RFC 7162 s3.2.5
        validity, modseq, known, match = params
        folder = view.folder
        if validity != folder.uidValidity:
            return
        knownUids = None
        if known is not None:
            knownUids = known.resolve(max(view.maxUid(), folder.uidNext - 1))
        expunged = folder.expungedSince(modseq)
        out = []
        present = set(view.uids)
        if expunged is None:
            # Not remembered: everything in the client's range that is not here.
            ranges = knownUids or [(1, folder.uidNext - 1)]
            gone = []
            for lo, hi in ranges:
                gone.extend(u for u in range(lo, min(hi, folder.uidNext - 1) + 1) if u not in present)
                if len(gone) > 1000000:
                    break
        else:
            gone = [u for u in expunged if u not in present]
            if knownUids is not None:
                gone = [u for u in gone if any(lo <= u <= hi for lo, hi in knownUids)]
        if gone:
            out.append(b"* VANISHED (EARLIER) " + serialize.seqset(gone) + b"\r\n")
        get = folder.get
        for msn, uid in enumerate(view.uids, 1):
            info = get(uid)
            if info is not None and info.modseq > modseq:
                out.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (
                    msn, uid, serialize.flags(view.flagsFor(info)), info.modseq))
                if len(out) > 2000:
                    self.sendLines(out)
                    out = []
                    await self.drain()
        self.sendLines(out)

    def _deselect(self):
        view, self.view = self.view, None
        if view is not None:
            view.close()

    async def cmdCreate(self, cmd):
        name = self.decodeName(cmd.mailbox)
        # RFC 3501 s6.3.3: a trailing separator only declares intent.
        name = name.rstrip("/") if name.rstrip("/") else name
        if name == INBOX:
            raise no("INBOX exists already", b"ALREADYEXISTS")
        try:
            await self.account.createFolder(name)
        except FolderExists:
            raise no("Mailbox exists already", b"ALREADYEXISTS")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % _reason(e), b"CANNOT")

    async def cmdDelete(self, cmd):
        name = self.decodeName(cmd.mailbox)
        if name == INBOX:
            raise no("INBOX cannot be deleted", b"CANNOT")
        self.shared.keeper.forget(self.username, name)
        try:
            await self.account.deleteFolder(name)
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % _reason(e), b"CANNOT")

    async def cmdRename(self, cmd):
        old = self.decodeName(cmd.old)
        new = self.decodeName(cmd.new)
        self.shared.keeper.forget(self.username, old)
        try:
            await self.account.renameFolder(old, new)
        except FolderExists:
            raise no("Target mailbox exists already", b"ALREADYEXISTS")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % _reason(e), b"CANNOT")

    async def cmdSubscribe(self, cmd):
        name = self.decodeName(cmd.mailbox)
        try:
            await self.account.setSubscribed(name, cmd.name == "SUBSCRIBE")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % _reason(e), b"CANNOT")

    async def cmdList(self, cmd):
        await self._list(cmd, lsub=False)

    async def cmdLsub(self, cmd):
        cmd.selection = ["SUBSCRIBED"]
        cmd.returns = []
        cmd.statusItems = None
        cmd.extended = False
        await self._list(cmd, lsub=True)

    async def _list(self, cmd, lsub):
        reference = self.decodeName(cmd.reference) if cmd.reference else ""
        patterns = []
        for raw in cmd.patterns:
            try:
                pattern = serialize.decodeMailbox(raw) if not self.rev2 else raw.decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise bad("Mailbox pattern is not valid")
            patterns.append(pattern)
        selection = set(cmd.selection)
        returns = set(cmd.returns)
        for option in selection:
            if option not in ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"):
                raise bad("Unknown LIST selection option %s" % option)
        if selection == {"RECURSIVEMATCH"}:
            raise bad("RECURSIVEMATCH needs another selection option")
        for option in returns:
            if option not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"):
                raise bad("Unknown LIST return option %s" % option)
        keyword = b"LSUB" if lsub else b"LIST"
        if not cmd.extended and len(patterns) == 1 and patterns[0] == "":
            # RFC 3501 s6.3.8: the hierarchy delimiter and the root name.
            root = reference.split("/")[0] + "/" if "/" in reference else ""
            self.send(b"* " + keyword + b' (\\Noselect) "/" ' + self.encodeName(root) + b"\r\n")
            return
        folders = await self.account.listFolders()
        existing = {f.name: f for f in folders}
        subscribed = {f.name for f in folders if f.subscribed}
        names = list(existing)
        listSubscriptions = getattr(self.account, "listSubscriptions", None)
        if listSubscriptions is not None and (lsub or "SUBSCRIBED" in selection or "SUBSCRIBED" in returns):
            # RFC 3501 s6.3.9, RFC 5258 s3: subscribed names whose folder is
            # gone are still listed (\Noselect in LSUB, \NonExistent in LIST).
            subscribed = set(await listSubscriptions())
            if lsub or "SUBSCRIBED" in selection:
                names += [n for n in subscribed if n not in existing]
        implied = set()
        for n in list(existing):
            parts = n.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in existing:
                    implied.add(parent)
        allNames = sorted(set(names) | implied, key=lambda n: (n != INBOX and not n.startswith(INBOX + "/"), n))
        hasChildren = set()
        for n in set(existing) | implied:  # not from names that only are subscribed
            if "/" in n:
                hasChildren.add(n.rsplit("/", 1)[0])
        subscribedParents = set()
        for n in subscribed:
            parts = n.split("/")
            for i in range(1, len(parts)):
                subscribedParents.add("/".join(parts[:i]))
        regexes = [_patternRegex(reference + p) for p in patterns]
        out = []
        statusFor = []
        for n in allNames:
            if not any(r.fullmatch(n) for r in regexes):
                continue
            info = existing.get(n)
            if "SUBSCRIBED" in selection:
                if n not in subscribed:
                    if "RECURSIVEMATCH" in selection and n in subscribedParents:
                        pass
                    elif lsub and n in subscribedParents and any(p.endswith("%") for p in patterns):
                        pass
                    else:
                        continue
            if "SPECIAL-USE" in selection and (info is None or not info.specialUse):
                continue
            attrs = []
            if info is None:
                attrs.append(b"\\NonExistent" if (self.rev2 or cmd.extended) and not lsub else b"\\Noselect")
            if not lsub:
                attrs.append(b"\\HasChildren" if n in hasChildren else b"\\HasNoChildren")
            if info is not None and info.specialUse and (not cmd.extended or "SPECIAL-USE" in returns
                                                         or "SPECIAL-USE" in selection or not returns):
                attrs.append(info.specialUse.encode())
            if not lsub and ("SUBSCRIBED" in returns or "SUBSCRIBED" in selection) and n in subscribed:
                attrs.append(b"\\Subscribed")
            line = b"* " + keyword + b" (" + b" ".join(attrs) + b') "/" ' + self.encodeName(n)
            if "RECURSIVEMATCH" in selection and n in subscribedParents:
                line += b' ("CHILDINFO" ("SUBSCRIBED"))'
            out.append(line + b"\r\n")
            if "STATUS" in returns and info is not None:
                statusFor.append((len(out), n))
        if statusFor:
            # RFC 5819: STATUS right after the LIST line of each mailbox.
            merged = []
            index = 0
            for position, n in statusFor:
                merged.extend(out[index:position])
                index = position
                try:
                    merged.append(b"* STATUS " + self.encodeName(n) + b" " + await self._status(n, cmd.statusItems) + b"\r\n")
                except NoSuchFolder:
                    pass
            merged.extend(out[index:])
            out = merged
        self.sendLines(out)

    async def cmdStatus(self, cmd):
        name = self.decodeName(cmd.mailbox)
        items = await self._status(name, cmd.items)
        self.send(b"* STATUS " + self.encodeName(name) + b" " + items + b"\r\n")

    async def _status(self, name, items):
        if "HIGHESTMODSEQ" in items:
            self.condstore = True  # RFC 7162 s3.1: a CONDSTORE enabling command
        folder = await self.account.openFolder(name)
        try:
            await folder.refresh()
            self.shared.keeper.touch((self.username, folder.name), self.account, folder.name)
            need = set(items)
            infos = folder.messages() if need & {"MESSAGES", "UNSEEN", "SIZE", "DELETED", "RECENT"} else []
            values = []
            for item in items:
                if item == "MESSAGES":
                    values.append(b"MESSAGES %d" % len(infos))
                elif item == "RECENT":
                    uids = [m.uid for m in infos]
                    values.append(b"RECENT %d" % len(self.shared.recent.peek((self.username, folder.name), uids)))
                elif item == "UIDNEXT":
                    values.append(b"UIDNEXT %d" % folder.uidNext)
                elif item == "UIDVALIDITY":
                    values.append(b"UIDVALIDITY %d" % folder.uidValidity)
                elif item == "UNSEEN":
                    values.append(b"UNSEEN %d" % sum(1 for m in infos if SEEN not in m.flags))
                elif item == "HIGHESTMODSEQ":
                    values.append(b"HIGHESTMODSEQ %d" % folder.highestModSeq)
                elif item == "SIZE":
                    values.append(b"SIZE %d" % sum(m.size for m in infos))
                elif item == "DELETED":
                    values.append(b"DELETED %d" % sum(1 for m in infos if DELETED in m.flags))
                elif item == "APPENDLIMIT":
                    values.append(b"APPENDLIMIT %d" % self.appendLimit())
            return b"(" + b" ".join(values) + b")"
        finally:
            folder.close()

    async def cmdAppend(self, cmd):
        name = self.decodeName(cmd.mailbox)
        message = cmd.message
        if len(message) > self.appendLimit():
            raise no("Message too big (limit %d bytes)" % self.appendLimit(), b"TOOBIG")
        if len(message) == 0:
            raise no("Empty message")
        for flag in cmd.flags:
            if flag.startswith("\\") and flag not in _STORABLE_SYSTEM_FLAGS:
                raise bad("Flag %s cannot be stored" % flag)
        try:
            folder = await self.account.openFolder(name)
        except NoSuchFolder:
            raise no("Mailbox does not exist", b"TRYCREATE")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % _reason(e), b"CANNOT")
        try:
            source = _canonical(message.open())
            uid = await folder.append(source, flags=cmd.flags, internalDate=cmd.date)
            validity = folder.uidValidity
        finally:
            folder.close()
        # RFC 4315 s3: APPENDUID.
        return ("OK", "APPEND completed", b"APPENDUID %d %d" % (validity, uid))

    async def cmdIdle(self, cmd):
        # RFC 2177
        self.send(b"+ idling\r\n")
        self.idling = True
        self._flush()
        if self.view is not None and self.settings.idlePoll:
            self._idlePoll = task.LoopingCall(self._poll)
            self._idlePoll.clock = self.clock
            self._idlePoll.start(self.settings.idlePoll, now=False).addErrback(lambda f: None)
        try:
            line = await self.readLine()
        finally:
            self._stopIdle()
        if line.strip().upper() != b"DONE":
            raise bad("Expected DONE to end IDLE")
        return ("OK", "IDLE terminated", None)

    def _stopIdle(self):
        self.idling = False
        if self._idlePoll is not None and self._idlePoll.running:
            self._idlePoll.stop()
        self._idlePoll = None
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None

    def _poll(self):
        # Changes by other programs (another MDA writing the Maildir).
        view = self.view
        if view is None or not self.idling:
            return
        d = view.folder.refresh()
        d.addErrback(lambda f: log.warn("imap: refresh while idle failed: {f}", f=f.getErrorMessage()))

    # Selected

    async def cmdCheck(self, cmd):
        pass

    async def cmdClose(self, cmd):
        view = self.view
        if not view.readOnly:
            # RFC 3501 s6.4.2: expunge silently.
            view.folder.removeListener(view)
            uids = view.deletedUids()
            if uids:
                await view.folder.expunge(uids)
        self._deselect()
        self.state = AUTHENTICATED

    async def cmdUnselect(self, cmd):
        self._deselect()
        self.state = AUTHENTICATED

    async def cmdExpunge(self, cmd):
        view = self.view
        if view.readOnly:
            raise no("Mailbox is read-only", b"READ-ONLY")
        within = None
        if cmd.uid:
            within = [uid for _, uid in self._resolve(cmd.seqset, True)]
        uids = view.deletedUids(within)
        if uids:
            await view.folder.expunge(uids)
        if self.condstore:
            return ("OK", "EXPUNGE completed", b"HIGHESTMODSEQ %d" % view.folder.highestModSeq)

    def _resolve(self, seqset, uid):
        try:
            return self.view.resolve(seqset, uid)
        except ValueError as e:
            raise bad(str(e))

    async def cmdCopy(self, cmd):
        return await self._copyOrMove(cmd, move=False)

    async def cmdMove(self, cmd):
        if self.view.readOnly:
            raise no("Mailbox is read-only", b"READ-ONLY")
        return await self._copyOrMove(cmd, move=True)

    async def _copyOrMove(self, cmd, move):
        view = self.view
        pairs = self._resolve(cmd.seqset, cmd.uid)
        name = self.decodeName(cmd.mailbox)
        try:
            dest = await self.account.openFolder(name)
        except NoSuchFolder:
            raise no("Mailbox does not exist", b"TRYCREATE")
        except InvalidFolderName as e:
            raise no("Invalid mailbox name: %s" % _reason(e), b"CANNOT")
        try:
            uids = [uid for _, uid in pairs if uid not in view.pendingExpunged]
            if not uids:
                if pairs and not cmd.uid:
                    raise no("Some of the requested messages no longer exist", b"EXPUNGEISSUED")
                return ("OK", "No messages to %s" % ("move" if move else "copy"), None)
            if move:
                mapping = await view.folder.moveTo(uids, dest)
            else:
                mapping = await view.folder.copyTo(uids, dest)
            validity = dest.uidValidity
        finally:
            dest.close()
        if not mapping:
            if cmd.uid:
                # Expunged by another session while we worked: RFC 3501
                # s6.4.8 (RFC 9051 s6.4.9) ignores a UID that no longer
                # exists, "UID COPY/MOVE ... OK without performing any
                # operations"; the EXPUNGE goes with the answer.
                return ("OK", "No messages to %s" % ("move" if move else "copy"), None)
            raise no("The messages no longer exist", b"EXPUNGEISSUED")
        code = b"COPYUID %d %s %s" % (validity, serialize.seqset([s for s, _ in mapping]), serialize.seqset([d for _, d in mapping]))
        if move:
            # RFC 6851 s4.3: COPYUID in an untagged OK, then the expunges.
            self.send(b"* OK [" + code + b"] Moved\r\n")
            self._flush(cmd)
            return ("OK", "MOVE completed", None)
        return ("OK", "COPY completed", code)

    async def cmdStore(self, cmd):
        view = self.view
        if view.readOnly:
            raise no("Mailbox is read-only", b"READ-ONLY")
        flags = []
        for flag in cmd.flags:
            if flag.startswith("\\") and flag not in _STORABLE_SYSTEM_FLAGS:
                raise bad("Flag %s cannot be stored" % flag)
            flags.append(flag)
        if cmd.unchangedSince is not None:
            self._enableCondstore()
        pairs = self._resolve(cmd.seqset, cmd.uid)
        get = view.folder.get
        uids = [uid for _, uid in pairs]
        changed, failed = await view.folder.setFlags(uids, flags, cmd.mode, cmd.unchangedSince)
        changedUids = {i.uid for i in changed}
        failedSet = set(failed)
        missing = False
        out = []
        for msn, uid in pairs:
            if uid in failedSet:
                continue
            info = get(uid)
            if info is None:
                missing = True
                continue
            if cmd.silent and not (self.condstore and uid in changedUids):
                view.pendingFlags.pop(uid, None)
                continue
            if cmd.silent:
                # RFC 7162 s3.1.3: MODSEQ even for .SILENT.
                parts = [b"UID %d" % uid] if cmd.uid else []
                parts.append(b"MODSEQ (%d)" % info.modseq)
            else:
                parts = [b"UID %d" % uid] if cmd.uid else []
                parts.append(b"FLAGS " + serialize.flags(view.flagsFor(info)))
                if self.condstore:
                    parts.append(b"MODSEQ (%d)" % info.modseq)
            view.pendingFlags.pop(uid, None)
            out.append(b"* %d FETCH (" % msn + b" ".join(parts) + b")\r\n")
            if len(out) >= 1000:
                self.sendLines(out)
                out = []
                await self.drain()
        self.sendLines(out)
        for info in changed:
            for f in info.flags:
                if f[0] != "\\":
                    view.keywords.add(f)
        if failed:
            if cmd.uid:
                modified = serialize.seqset(failed)
            else:
                modified = serialize.seqset([view.msnOf(u) for u in failed if view.msnOf(u)])
            return ("OK", "Conditional STORE failed for some messages", b"MODIFIED " + modified)
        if missing and not cmd.uid:
            # RFC 2180 s4.2.1 / RFC 5530; a UID STORE ignores what is gone
            # (RFC 3501 s6.4.8), its EXPUNGE goes with the answer.
            return _GONE

    async def cmdSearch(self, cmd):
        view = self.view
        charset = cmd.charset
        if charset is not None and charset not in ("UTF-8", "US-ASCII", "UTF8"):
            raise no("Charset %s is not supported" % charset, b"BADCHARSET (UTF-8 US-ASCII)")
        try:
            program = search.decodeStrings(cmd.keys, "utf-8" if charset != "US-ASCII" else "ascii")
        except search.SearchError as e:
            raise no(str(e), e.code)
        modseq = search.usesModseq(program)
        if modseq:
            self._enableCondstore()
        results = await self._runSearch(program)
        returns = cmd.returns
        if returns is None and self.rev2:
            returns = ["ALL"]
        tagPart = b'(TAG "' + cmd.tag.encode("ascii") + b'")'
        highest = 0
        if modseq and results:
            highest = max(info.modseq for _, _, info in results)
        numbers = [uid if cmd.uid else msn for msn, uid, _ in results]
        if returns is None:
            line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
            if modseq and results:
                line += b" (MODSEQ %d)" % highest
            self.send(line + b"\r\n")
            return
        # RFC 4731 ESEARCH / RFC 5182 SAVE
        options = set(returns) or {"ALL"}
        if options == {"SAVE"}:
            view.savedSearch = [uid for _, uid, _ in results]
            return
        if "SAVE" in options:
            if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT"}:
                chosen = []
                if results and "MIN" in options:
                    chosen.append(results[0][1])
                if results and "MAX" in options and results[-1][1] not in chosen:
                    chosen.append(results[-1][1])
                view.savedSearch = chosen
            else:
                view.savedSearch = [uid for _, uid, _ in results]
        parts = [b"* ESEARCH", tagPart]
        if cmd.uid:
            parts.append(b"UID")
        if numbers:
            if "MIN" in options:
                parts.append(b"MIN %d" % numbers[0])
            if "MAX" in options:
                parts.append(b"MAX %d" % numbers[-1])
            if "ALL" in options:
                parts.append(b"ALL " + serialize.seqset(numbers))
        if "COUNT" in options:
            parts.append(b"COUNT %d" % len(numbers))
        if modseq and results:
            parts.append(b"MODSEQ %d" % highest)
        self.send(b" ".join(parts) + b"\r\n")

    async def _runSearch(self, program):
        """[(msn, uid, info)] of matching messages, ascending."""
        view = self.view
        folder = view.folder
        get = folder.get
        meta, content = search.split(program)
        searcher = search.Searcher(program, len(view), view.maxUid(), set(view.savedSearch or ()),
                                   self.shared.settings.mimeParts)
        recent = view.recent
        results = []
        todo = []
        match = searcher.match
        clock = self.clock
        turnStart = clock.seconds()
        for msn, uid in enumerate(view.uids, 1):
            if not msn & 1023 and clock.seconds() - turnStart > FETCH_TURN:
                # Index keys over a large mailbox: let other sessions in.
                await task.deferLater(clock, 0, lambda: None)
                turnStart = clock.seconds()
                if self.closed:
                    raise ConnectionError("closed")
            info = get(uid)
            if info is None:
                continue
            c = search.Candidate(msn, uid, info, uid in recent)
            ok = True
            for key in meta:
                if not match(c, key):
                    ok = False
                    break
            if not ok:
                continue
            if content:
                todo.append(c)
            else:
                results.append((msn, uid, info))
        if todo:
            opener = _Opener(folder, [c.uid for c in todo], window=16)
            try:
                results = await self._searchContent(program, todo, content, match, opener)
            finally:
                opener.close()
        return results

    async def _searchContent(self, program, todo, content, match, opener):
        """
        Read and match the candidates in a worker thread, 64 at a time (or
        1 MB), while the next ones are being opened: the reactor thread
        stays free for other sessions.  (The Maildir store reads small
        messages whole when it opens them, on the reactor thread; large
        ones are still read here.)
        """
        matched = []
        batch = []
        batchBytes = 0
        running = None
        try:
            for c in todo:
                try:
                    f = await opener.next(c.uid)
                except NoSuchMessage:
                    continue
                batch.append((c, f))
                batchBytes += c.info.size
                if len(batch) >= SEARCH_BATCH or batchBytes >= SEARCH_BATCH_BYTES:
                    if running is not None:
                        matched.extend(await running)
                        running = None
                    if self.closed:
                        raise ConnectionError("closed")
                    running = self.shared.inThread(_matchBatch, batch, content, match, program)
                    batch = []
                    batchBytes = 0
            if running is not None:
                matched.extend(await running)
                running = None
            if batch:
                matched.extend(await self.shared.inThread(_matchBatch, batch, content, match, program))
                batch = []
        finally:
            for _, f in batch:
                f.close()
        return matched

    async def cmdFetch(self, cmd):
        view = self.view
        pairs = self._resolve(cmd.seqset, cmd.uid)
        atts = list(cmd.atts)
        names = {a.name for a in atts}
        if cmd.uid and "UID" not in names:
            atts.insert(0, FetchAtt("UID"))
        changedSince = cmd.changedSince
        if changedSince is not None or "MODSEQ" in names:
            self._enableCondstore()
        if changedSince is not None and "MODSEQ" not in names:
            atts.append(FetchAtt("MODSEQ"))
        folder = view.folder
        get = folder.get
        if cmd.vanished:
            # RFC 7162 s3.2.6
            if not self.qresync:
                raise bad("VANISHED needs ENABLE QRESYNC")
            expunged = folder.expungedSince(changedSince)
            ranges = cmd.seqset.resolve(max(view.maxUid(), folder.uidNext - 1))
            if expunged is None:
                present = set(view.uids)
                expunged = [u for lo, hi in ranges for u in range(lo, min(hi, folder.uidNext - 1) + 1) if u not in present]
            gone = [u for u in expunged if any(lo <= u <= hi for lo, hi in ranges)]
            if gone:
                self.send(b"* VANISHED (EARLIER) " + serialize.seqset(gone) + b"\r\n")
        setSeen = not view.readOnly and any(
            (a.name in ("BODY[]", "BINARY[]") and not a.peek) or a.name in ("RFC822", "RFC822.TEXT") for a in atts)
        seenNow = set()
        if setSeen:
            unseen = []
            for _, uid in pairs:
                info = get(uid)
                if info is not None and SEEN not in info.flags:
                    unseen.append(uid)
            if unseen:
                changed, _ = await folder.setFlags(unseen, [SEEN], "add")
                seenNow = {i.uid for i in changed}
                if "FLAGS" not in names:
                    atts.append(FetchAtt("FLAGS"))
        content = any(a.name in _CONTENT_ATTS for a in atts)
        opener = None
        if content:
            todo = [uid for _, uid in pairs
                    if (i := get(uid)) is not None and (changedSince is None or i.modseq > changedSince)]
            opener = _Opener(folder, todo)
        try:
            result = await self._fetchLoop(pairs, atts, names, content, changedSince, seenNow, opener)
        finally:
            if opener is not None:
                opener.close()
        if cmd.uid and result == _GONE:
            # RFC 3501 s6.4.8 (RFC 9051 s6.4.9): a UID that no longer exists
            # is ignored without an error; its EXPUNGE goes with the answer.
            return None
        return result

    async def _fetchLoop(self, pairs, atts, names, content, changedSince, seenNow, opener):
        if not content:
            return await self._fetchMetadata(pairs, atts, names, changedSince)
        view = self.view
        get = view.folder.get
        missing = False
        error = None
        clock = self.clock
        turnStart = clock.seconds()
        for msn, uid in pairs:
            info = get(uid)
            if info is None:
                missing = True
                continue
            if changedSince is not None and info.modseq <= changedSince:
                continue
            try:
                f = await opener.next(uid)
                written = await self._fetchOne(f, msn, uid, info, atts, seenNow)
            except NoSuchMessage:
                missing = True
                continue
            except fetch.UnknownEncoding as e:
                error = ("NO", "Unknown Content-Transfer-Encoding %s" % str(e)[:40], b"UNKNOWN-CTE")
                continue
            if written:
                await self.drain()
            if clock.seconds() - max(turnStart, self._waitedAt) > FETCH_TURN:
                await task.deferLater(clock, 0, lambda: None)
                turnStart = clock.seconds()
            if self.closed:
                return _ALREADY_ANSWERED
            if "FLAGS" in names or uid in seenNow:
                view.pendingFlags.pop(uid, None)
        if error:
            return error
        if missing:
            return _GONE

    async def _fetchMetadata(self, pairs, atts, names, changedSince):
        """FETCH of index data only (FLAGS, UID, sizes...): no I/O, one line per message."""
        view = self.view
        if "FLAGS" in names and view.pendingFlags:
            # These FETCH responses carry the current flags.
            for _, uid in pairs:
                view.pendingFlags.pop(uid, None)
        if len(pairs) > 2000:
            lookup = {m.uid: m for m in view.folder.messages()}.get
        else:
            lookup = view.folder.get
        make = _lineMaker(tuple(a.name for a in atts), view.recent if view.showRecent else None)
        missing = False
        batch = []
        append = batch.append
        count = 0
        for msn, uid in pairs:
            info = lookup(uid)
            if info is None:
                missing = True
                continue
            if changedSince is not None and info.modseq <= changedSince:
                continue
            append(make(msn, info))
            count += 1
            if count == 4096:
                self.sendLines(batch)
                batch.clear()
                count = 0
                await self.drain()
                if self.closed:
                    return _ALREADY_ANSWERED
        self.sendLines(batch)
        if missing:
            return _GONE

    def _simpleItem(self, name, info):
        if name == "UID":
            return b"UID %d" % info.uid
        if name == "FLAGS":
            return b"FLAGS " + serialize.flags(self.view.flagsFor(info))
        if name == "INTERNALDATE":
            return b"INTERNALDATE " + serialize.internalDate(info.internalDate)
        if name == "RFC822.SIZE":
            return b"RFC822.SIZE %d" % info.size
        if name == "MODSEQ":
            return b"MODSEQ (%d)" % info.modseq
        if name == "SAVEDATE":
            return b"SAVEDATE NIL"
        if name in ("EMAILID", "THREADID"):
            return name.encode() + b" NIL"
        raise AssertionError(name)

    def _structure(self, uid, f, size, full, loaded=None):
        """The scanned structure (``full``: every part, else the header); ``loaded`` is what _loadStructure gave."""
        if loaded is not None and (loaded.full or not full):
            return loaded
        key = (self.username, self.view.name, self.view.uidValidity, uid)
        cache = self.shared.structures
        entry = cache.get(key)
        if entry is not None and (entry.full or not full):
            return entry
        f.seek(0)
        settings = self.shared.settings
        entry = fetch.build(f, size, full, settings.mimeParts, settings.mimeDepth)
        cache.put(key, entry)
        return entry

    async def _loadStructure(self, uid, f, size, full):
        """
        The structure, built before the response is: on the reactor thread
        while it is small work (fetch.INLINE_BUDGET), else in a worker
        thread with ENVELOPE and BODYSTRUCTURE rendered there too, so a
        message made of 10,000 parts (or an enormous header) does not keep
        other sessions waiting.
        """
        key = (self.username, self.view.name, self.view.uidValidity, uid)
        cache = self.shared.structures
        entry = cache.get(key)
        if entry is not None and (entry.full or not full):
            return entry
        settings = self.shared.settings
        f.seek(0)
        try:
            entry = fetch.build(f, size, full, settings.mimeParts, settings.mimeDepth, fetch.INLINE_BUDGET)
        except fetch.OverBudget:
            f.seek(0)
            entry = await self.shared.inThread(fetch.build, f, size, full, settings.mimeParts, settings.mimeDepth,
                                               None, True)
            if self.closed:
                raise ConnectionError("closed")
        cache.put(key, entry)
        return entry

    async def _fetchOne(self, f, msn, uid, info, atts, seenNow):
        """Write one FETCH response with content items; returns bytes written (roughly)."""
        f = _seekable(f, info.size)
        try:
            need = _structureNeed(atts)
            loaded = None
            if need is not None:
                loaded = await self._loadStructure(uid, f, info.size, need)
            pieces = [b"* %d FETCH (" % msn]
            streams = []
            first = True
            total = 0
            for a in atts:
                name = a.name
                pieces.append(b"" if first else b" ")
                first = False
                if name in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "SAVEDATE", "EMAILID", "THREADID"):
                    pieces.append(self._simpleItem(name, info))
                    continue
                if name == "ENVELOPE":
                    pieces.append(b"ENVELOPE " + self._structure(uid, f, info.size, False, loaded).envelope())
                    continue
                if name == "BODY":
                    pieces.append(b"BODY " + self._structure(uid, f, info.size, True, loaded).body())
                    continue
                if name == "BODYSTRUCTURE":
                    pieces.append(b"BODYSTRUCTURE " + self._structure(uid, f, info.size, True, loaded).bodystructure())
                    continue
                if name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                    if name == "RFC822":
                        where = ("range", 0, info.size)
                    else:
                        root = self._structure(uid, f, info.size, False, loaded).root
                        where = ("range", 0, root.bodyStart) if name == "RFC822.HEADER" else ("range", root.bodyStart, info.size)
                    pieces.append(name.encode() + b" ")
                    total += self._literal(pieces, streams, f, where, None)
                    continue
                if name == "BODY[]":
                    section = a.section
                    label = b"BODY[" + section.spec() + b"]"
                    if a.partial:
                        label += b"<%d>" % a.partial[0]
                    pieces.append(label + b" ")
                    try:
                        where = self._whereBody(uid, f, info, section, loaded)
                    except fetch.SectionError:
                        pieces.append(b"NIL")
                        continue
                    total += self._literal(pieces, streams, f, where, a.partial)
                    continue
                if name == "BINARY[]":
                    label = b"BINARY[" + a.section.spec() + b"]"
                    if a.partial:
                        label += b"<%d>" % a.partial[0]
                    pieces.append(label + b" ")
                    try:
                        root = self._structure(uid, f, info.size, bool(a.section.part), loaded).root
                        start, end, enc = fetch.binarySource(root, a.section)
                    except fetch.SectionError:
                        pieces.append(b"NIL")
                        continue
                    total += self._binaryLiteral(pieces, streams, f, uid, a.section, start, end, enc, a.partial)
                    continue
                if name == "BINARY.SIZE":
                    label = b"BINARY.SIZE[" + a.section.spec() + b"] "
                    try:
                        root = self._structure(uid, f, info.size, bool(a.section.part), loaded).root
                        start, end, enc = fetch.binarySource(root, a.section)
                    except fetch.SectionError:
                        pieces.append(label + b"0")
                        continue
                    pieces.append(label + b"%d" % self._binarySize(f, uid, a.section, start, end, enc))
                    continue
                raise AssertionError(name)
            pieces.append(b")\r\n")
            # Write, streaming the big literals.
            if not streams:
                self.sendPieces(pieces)
                return total
            position = 0
            for index, stream in streams:
                self.send(b"".join(pieces[position:index]))
                position = index
                await self._stream(f, *stream)
                if self.closed:
                    return total
            self.send(b"".join(pieces[position:]))
            return total
        finally:
            f.close()

    def _whereBody(self, uid, f, info, section, loaded=None):
        if not section.part and section.text is None:
            return ("range", 0, info.size)
        full = bool(section.part)
        root = self._structure(uid, f, info.size, full, loaded).root
        return fetch.resolve(root, section)

    def _literal(self, pieces, streams, f, where, partial):
        if where[0] == "bytes":
            data = where[1]
            if partial:
                data = data[partial[0]:partial[0] + partial[1]]
            pieces.append(b"{%d}\r\n" % len(data))
            pieces.append(data)
            return len(data)
        _, start, end = where
        if partial:
            start = min(end, start + partial[0])
            end = min(end, start + partial[1])
        length = end - start
        pieces.append(b"{%d}\r\n" % length)
        if length <= INLINE_LITERAL:
            data = _readRange(f, start, length)
            if len(data) < length:
                log.error("imap: {user}: message shorter than its index says; padded", user=self.username)
                data += b" " * (length - len(data))
            pieces.append(data)
        else:
            pieces.append(b"")
            streams.append((len(pieces) - 1, (start, length, None)))
        return length

    def _binaryInfo(self, f, uid, section, start, end, enc):
        """(decoded size, contains NUL) of a BINARY section; one decoding pass, cached."""
        key = (self.username, self.view.name, self.view.uidValidity, uid, "binary", section)
        cached = self.shared.structures.get(key)
        if cached is not None:
            return cached
        size = 0
        nul = False
        for chunk in fetch.decodedChunks(f, start, end, enc):
            size += len(chunk)
            nul = nul or b"\x00" in chunk
        info = (size, nul)
        self.shared.structures.put(key, info)
        return info

    def _binarySize(self, f, uid, section, start, end, enc):
        if enc in ("7bit", "8bit", "binary"):
            return end - start
        return self._binaryInfo(f, uid, section, start, end, enc)[0]

    def _binaryLiteral(self, pieces, streams, f, uid, section, start, end, enc, partial):
        # RFC 3516 s4.2: literal8 ("~{n}") when the data has NUL, else a literal.
        if end - start <= INLINE_LITERAL:
            data = b"".join(fetch.decodedChunks(f, start, end, enc))
            if partial:
                data = data[partial[0]:partial[0] + partial[1]]
            pieces.append((b"~{%d}\r\n" if b"\x00" in data else b"{%d}\r\n") % len(data))
            pieces.append(data)
            return len(data)
        total, nul = self._binaryInfo(f, uid, section, start, end, enc)
        skip = 0
        length = total
        if partial:
            skip = min(total, partial[0])
            length = min(total - skip, partial[1])
        pieces.append((b"~{%d}\r\n" if nul else b"{%d}\r\n") % length)
        pieces.append(b"")
        streams.append((len(pieces) - 1, (start, end - start, (enc, skip, length))))
        return length

    async def _stream(self, f, start, length, decoding):
        """Write ``length`` bytes of the message (decoded if asked), waiting for the transport."""
        if decoding is None:
            position = start
            left = length
            while left > 0 and not self.closed:
                chunk = _readRange(f, position, min(STREAM_CHUNK, left))
                position += len(chunk)
                if not chunk:
                    log.error("imap: {user}: message shorter than its index says; padded", user=self.username)
                    chunk = b" " * left
                left -= len(chunk)
                self.send(chunk)
                await self.drain()
            return
        enc, skip, want = decoding
        sent = 0
        for chunk in fetch.decodedChunks(f, start, start + length, enc):
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk = chunk[skip:]
                skip = 0
            chunk = chunk[:want - sent]
            if not chunk:
                break
            sent += len(chunk)
            self.send(chunk)
            await self.drain()
            if self.closed or sent >= want:
                break
        if sent < want and not self.closed:
            self.send(b" " * (want - sent))


_ALREADY_ANSWERED = object()


_LINE_ITEMS = {
    "UID": (b"UID %d", "i.uid"),
    "FLAGS": (b"FLAGS %s", "F[i.flags]"),
    "INTERNALDATE": (b"INTERNALDATE %s", "D(i.internalDate)"),
    "RFC822.SIZE": (b"RFC822.SIZE %d", "i.size"),
    "MODSEQ": (b"MODSEQ (%d)", "i.modseq"),
    "SAVEDATE": (b"SAVEDATE NIL", None),
    "EMAILID": (b"EMAILID NIL", None),
    "THREADID": (b"THREADID NIL", None),
}
_lineCode = {}


def _lineMaker(names, recent=None):
    """
    A function (msn, info) -> the FETCH line for metadata-only items, built
    from fixed templates: one formatting operation per message in the hot
    loop of FETCH FLAGS over a whole mailbox.  Only the names in
    _LINE_ITEMS are ever used; ``recent`` is the set of UIDs shown with
    \\Recent (IMAP4rev1).
    """
    key = (names, bool(recent))
    code = _lineCode.get(key)
    if code is None:
        template = []
        exprs = []
        for name in names:
            text, expr = _LINE_ITEMS[name]
            template.append(text)
            if expr:
                exprs.append(expr.replace("F[i.flags]", "R(i)") if recent else expr)
        fmt = b"* %d FETCH (" + b" ".join(template) + b")\r\n"
        source = "lambda msn, i: %r %% (msn, %s)" % (fmt, "".join(e + ", " for e in exprs))
        code = _lineCode[key] = compile(source, "<fetch line>", "eval")
    flags = serialize.flags
    namespace = {"D": serialize.internalDate, "F": serialize.FLAGS}
    if recent:
        def R(i):
            return flags(i.flags | _RECENT) if i.uid in recent else flags(i.flags)

        namespace["R"] = R
    return eval(code, namespace)  # noqa: S307 - built from the fixed templates above


_RECENT = frozenset({"\\Recent"})


class _Opener:
    """
    Open messages a few ahead of their use, in order: a store may open
    files in worker threads (Maildir: only when another program renamed the
    file since the last sync), and keeping several opens in flight hides
    that round trip (FETCH BODY[] and SEARCH TEXT over many messages).
    """

    WINDOW = 4

    def __init__(self, folder, uids, window=WINDOW):
        self.folder = folder
        self.uids = uids
        self.window = window
        self.position = 0
        self.pending = {}
        self._fill()

    def _fill(self):
        while self.position < len(self.uids) and len(self.pending) < self.window:
            uid = self.uids[self.position]
            self.position += 1
            self.pending[uid] = self.folder.openMessage(uid)

    async def next(self, uid):
        d = self.pending.pop(uid, None)
        if d is None:
            d = self.folder.openMessage(uid)
        self._fill()
        return await d

    def close(self):
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.addCallbacks(lambda f: f.close(), lambda failure: None)


def _structureNeed(atts):
    """What the FETCH items need scanned: None, False (the header), True (every part)."""
    need = None
    for a in atts:
        name = a.name
        if name in ("BODY", "BODYSTRUCTURE"):
            return True
        if name in ("BODY[]", "BINARY[]", "BINARY.SIZE"):
            section = a.section
            if section is None or (not section.part and section.text is None):
                if name == "BODY[]":
                    continue
            if section is not None and section.part:
                return True
            need = False
        elif name in ("ENVELOPE", "RFC822.HEADER", "RFC822.TEXT"):
            need = False
    return need


def _reason(e):
    text = str(e) or type(e).__name__
    return text[:200]


def _matchBatch(batch, content, match, program):
    """(In a worker thread.) Read each message of ``batch`` and keep those that match."""
    out = []
    for c, f in batch:
        try:
            if c.info.size <= search.DECODE_LIMIT:
                c.data = _readRange(f, 0, c.info.size)
            else:
                f = _seekable(f, c.info.size)
                c.data = _readHeaderBytes(f)
                f.seek(0)
                c.huge = search.hugeMatch(f, program)
        except (OSError, ValueError):
            c.data = None
        finally:
            f.close()
        if c.data is not None and all(match(c, key) for key in content):
            out.append((c.msn, c.uid, c.info))
        c.data = None
    return out


def _readRange(f, start, length):
    """
    ``length`` bytes from ``start`` (fewer at the end of the file).  A plain
    file is read with one pread(2): no seek, one system call, so the
    reactor thread gives up the GIL once instead of twice per message.
    """
    if type(f) is io.BufferedReader and type(f.raw) is io.FileIO:
        fd = f.raw.fileno()
        data = os.pread(fd, length, start)
        while len(data) < length:
            more = os.pread(fd, length - len(data), start + len(data))
            if not more:
                break
            data += more
        return data
    if type(f) is io.BytesIO and start == 0:
        # A message the store read into memory: the whole of it without a
        # copy (a BytesIO made from bytes shares them until written to).
        data = f.getvalue()
        if len(data) <= length:
            return data
    f.seek(start)
    return f.read(length)


def _seekable(f, size):
    """
    A seekable file with the message.  Stores may hand out a forward-only
    reader (a Maildir file with bare LF served as CRLF); copy those to
    memory when small, to an anonymous temporary file when large.
    """
    try:
        if f.seekable():
            return f
    except (AttributeError, ValueError):
        pass
    import io
    import shutil
    import tempfile

    if size <= INLINE_LITERAL * 16:
        data = f.read()
        f.close()
        return io.BytesIO(data)
    out = tempfile.TemporaryFile(prefix="mailnet-imap-")
    shutil.copyfileobj(f, out, STREAM_CHUNK)
    f.close()
    out.seek(0)
    return out


def _readHeaderBytes(f, limit=256 * 1024):
    out = []
    size = 0
    while size < limit:
        line = f.readline()
        if not line:
            break
        out.append(line)
        size += len(line)
        if line in (b"\r\n", b"\n"):
            break
    return b"".join(out)


def _canonical(f):
    """
    The message with bare LF turned into CRLF (the store keeps canonical
    messages; some clients APPEND with bare LF).  Returns a file object
    positioned at 0: ``f`` itself when it is canonical already.
    """
    import tempfile

    bare = False
    previous = b""
    while True:
        chunk = f.read(1024 * 1024)
        if not chunk:
            break
        data = (b"\r" if previous == b"\r" else b"") + chunk
        if data.count(b"\n") != data.count(b"\r\n"):
            bare = True
            break
        previous = chunk[-1:]
    f.seek(0)
    if not bare:
        return f
    out = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
    pendingCR = False
    while True:
        chunk = f.read(1024 * 1024)
        if not chunk:
            break
        if pendingCR:
            chunk = b"\r" + chunk
            pendingCR = False
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
            pendingCR = True
        out.write(chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    if pendingCR:
        out.write(b"\r")
    out.seek(0)
    return out


_STORABLE_SYSTEM_FLAGS = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"}


def _patternRegex(pattern):
    """A LIST pattern as a regex: ``*`` anything, ``%`` anything but the separator."""
    import re

    head = pattern[:5]
    if head.upper() == INBOX and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = INBOX + pattern[5:]
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


_ANY = (NOT_AUTHENTICATED, AUTHENTICATED, SELECTED)
_AUTH = (AUTHENTICATED, SELECTED)
_SEL = (SELECTED,)

_HANDLERS = {
    "CAPABILITY": (_ANY, Session.cmdCapability),
    "NOOP": (_ANY, Session.cmdNoop),
    "LOGOUT": (_ANY, Session.cmdLogout),
    "ID": (_ANY, Session.cmdId),
    "STARTTLS": ((NOT_AUTHENTICATED,), Session.cmdStarttls),
    "LOGIN": ((NOT_AUTHENTICATED,), Session.cmdLogin),
    "AUTHENTICATE": ((NOT_AUTHENTICATED,), Session.cmdAuthenticate),
    "ENABLE": (_AUTH, Session.cmdEnable),
    "NAMESPACE": (_AUTH, Session.cmdNamespace),
    "SELECT": (_AUTH, Session.cmdSelect),
    "EXAMINE": (_AUTH, Session.cmdSelect),
    "CREATE": (_AUTH, Session.cmdCreate),
    "DELETE": (_AUTH, Session.cmdDelete),
    "RENAME": (_AUTH, Session.cmdRename),
    "SUBSCRIBE": (_AUTH, Session.cmdSubscribe),
    "UNSUBSCRIBE": (_AUTH, Session.cmdSubscribe),
    "LIST": (_AUTH, Session.cmdList),
    "LSUB": (_AUTH, Session.cmdLsub),
    "STATUS": (_AUTH, Session.cmdStatus),
    "APPEND": (_AUTH, Session.cmdAppend),
    "IDLE": (_AUTH, Session.cmdIdle),
    "CHECK": (_SEL, Session.cmdCheck),
    "CLOSE": (_SEL, Session.cmdClose),
    "UNSELECT": (_SEL, Session.cmdUnselect),
    "EXPUNGE": (_SEL, Session.cmdExpunge),
    "SEARCH": (_SEL, Session.cmdSearch),
    "FETCH": (_SEL, Session.cmdFetch),
    "STORE": (_SEL, Session.cmdStore),
    "COPY": (_SEL, Session.cmdCopy),
    "MOVE": (_SEL, Session.cmdMove),
}
