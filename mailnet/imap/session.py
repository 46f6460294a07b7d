"""
The IMAP session: one per connection, a state machine over the parsed
commands (RFC 3501 s3 / RFC 9051 s3: not authenticated, authenticated,
selected, logout).

The session owns no sockets, no timers and does no I/O (docs/design.md,
"One protocol shape"): it is given bytes (:meth:`IMAPSession.feed`) and
returns *effects* (:mod:`mailnet.effects`, :mod:`mailnet.imap.effects`):
reply bytes (``Send``), ``Login``, ``StartTLS``, ``Compress``,
``StoreCall``, ``InThread``, ``Drain``, ``Start``/``Wait``...; the runner
(:mod:`mailnet.imap.runner`, mixed into the Twisted protocol) does them and
answers the long ones through :meth:`IMAPSession.completed`, which returns
the effects that follow.  A command is a generator that ``yield``s its long
effects (a plain function when it has none).

Its timers (autologout, the deadlines of :mod:`mailnet.deadline`) are
``StartTimer``/``CancelTimer`` effects; the runner answers with
:meth:`IMAPSession.event` (``TimerFired(name)``).  What it reads of its
connection (*out*: the Twisted protocol in :mod:`mailnet.imap.server`, or
a test double) are the facts ``secure`` and ``peer``; the one call it
makes there is ``wake()``, when a store event reaches its view outside its
turn (IDLE): the runner hands it ``TimerFired("wake")`` on the next turn.

Commands are executed strictly in order, one at a time (RFC 3501 s5.5
allows some concurrency; in-order is simplest and correct).  The next
command is not even parsed until the previous one has finished, so
pipelined bytes after STARTTLS are still raw in the reader when TLS starts,
and are dropped (RFC 3207 s4.2 / RFC 9051 s11.1: nothing from before the
handshake is trusted).

This module is the core (input, dispatch, capabilities, mailbox names);
the output (outbox and effects) is in :mod:`mailnet.imap.output`, the
timers in :mod:`mailnet.imap.timers`; the commands live in
:mod:`mailnet.imap.commands`, one mixin class per area, which
:class:`IMAPSession` combines.
"""

from __future__ import annotations

import errno
import inspect

from twisted.python.failure import Failure

from mailnet.deadline import Deadlines
from mailnet.imap import dialogue, serialize
from mailnet.imap.commands.auth import AuthCommands
from mailnet.imap.commands.catenate import CatenateCommands
from mailnet.imap.commands.common import (
    ALREADY_ANSWERED,
    AUTHENTICATED,
    NOT_AUTHENTICATED,
    SELECTED,
    CommandError,
    bad,
    no,
    reasonOf,
)
from mailnet.imap.commands.context import ContextCommands
from mailnet.imap.commands.fetch import FetchCommands
from mailnet.imap.commands.folders import FolderCommands
from mailnet.imap.commands.messages import MessageCommands
from mailnet.imap.commands.notify import NotifyCommands
from mailnet.imap.commands.quota import CAPABILITIES as QUOTA_CAPABILITIES
from mailnet.imap.commands.quota import QuotaCommands
from mailnet.imap.commands.search import SearchCommands
from mailnet.imap.commands.select import SelectCommands
from mailnet.imap.commands.thread import THREAD_ALGORITHMS, ThreadCommands
from mailnet.imap.effects import (
    Close,
    Failed,
    PauseReading,
    ReadLine,
    ResumeReading,
    StoreCall,
)
from mailnet.imap.output import SessionOutput
from mailnet.imap.parser import (
    CommandReader,
    Frame,
    FrameError,
    NeedContinuation,
    ParseError,
    RawLine,
    parseCommand,
)
from mailnet.imap.shared import Shared
from mailnet.imap.timers import SessionTimers, TimerClock
from mailnet.logs import Logger
from mailnet.store.interfaces import (
    INBOX,
    FolderExists,
    FolderLimitExceeded,
    InvalidFolderName,
    NoSuchFolder,
    StorageFull,
    StoreError,
    TemporaryStoreError,
)

log = Logger()

# Commands that may not be interrupted by EXPUNGE (RFC 3501 s7.4.1).
_NO_EXPUNGE = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}
_PREFLUSH = {"NOOP", "CHECK", "COPY", "MOVE", "EXPUNGE", "STATUS", "LIST", "APPEND"}
# Largest literal accepted before login.
PREAUTH_LITERAL = 8192


class IMAPSession(SessionOutput, SessionTimers, AuthCommands, FolderCommands, SelectCommands, MessageCommands,
                  CatenateCommands, SearchCommands, FetchCommands, ThreadCommands, QuotaCommands, ContextCommands,
                  NotifyCommands):
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
        self.utf8 = False  # ENABLE UTF8=ACCEPT (RFC 6855)
        self.condstore = False
        self.qresync = False
        self.busy = False
        self.closed = False
        self.idling = False
        self.notify = None  # NOTIFY SET in force (mailnet.imap.notifyspec.NotifyState)
        self.authFailures = 0
        # Facts the session keeps itself (its effects change them).
        self.secure = out.secure
        self.compressAvailable = hasattr(out, "startCompression")  # RFC 4978 COMPRESS=DEFLATE
        self.compressed = False
        # While the session computes effects (feed, completed, event,
        # start): the bytes written so far and the effects; None in between
        # (the connection is gone: what is written then is dropped).
        self._outbox = None
        self._effects = None
        self._pieces = False  # the outbox holds message bytes (sendPieces)
        self._task = None  # the generator of the command in progress
        self._pumping = False
        self._waitedAt = 0.0  # when drain() last had to wait for the client
        self._lineWaiter = None  # ReadLine while a command waits for a raw line
        self._readingPaused = False
        self._wakeAsked = False  # out.wake() called, TimerFired("wake") not come yet
        self._polling = False  # the runner polls the folder for IDLE
        self._autologout = False  # the autologout timer runs
        self._lastInput = 0.0  # when the client last sent something
        self._current = None
        self._lost = False
        # The deadlines' one timer is the runner's timer "deadlines".
        self._deadlineTimer = None
        self.deadlines = Deadlines(TimerClock(self), self._deadlinePassed)
        # The dialogue at debug level (mailnet.imap.dialogue).  Off, the
        # output methods are the plain ones: nothing is paid per write.
        self._dialogue = None
        if dialogue.enabled():
            self._dialogue = dialogue.Dialogue(out.peer)
            self.send, self.sendLines, self.sendPieces = self._sendLogged, self._sendLinesLogged, self._sendPiecesLogged
        shared.sessions.add(self)

    # Life cycle

    def start(self):
        """The greeting (RFC 3501 s7.1.1): returns its effects."""
        self._begin()
        self._resetTimer()
        # log in within loginDeadline of connecting, however busy the client
        self.deadlines.start("login", self.settings.loginDeadline)
        self.send(b"* OK [CAPABILITY " + self.capabilities() + b"] " + self.settings.hostname.encode("ascii", "replace")
                  + b" mailnet IMAP ready\r\n")
        return self._end()

    def connectionLost(self):
        if self._lost:
            return
        self._lost = True
        self.closed = True
        self._autologout = False  # the runner has stopped its timers
        self.deadlines.cancel()
        self._stopIdle()
        self._endNotify()
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
            self._lineWaiter = None
            # A command waiting for the client's next line: end it (its
            # finally clauses close what it opened, at once).
            self.abandon()
            if self._current is not None:
                self._current.close()
                self._current = None

    def _close(self):
        if not self.closed:
            self.closed = True
            if self._effects is not None:
                self.emit(Close())

    def inputFailed(self, text):
        """Nothing the client sends can be read any more (a broken COMPRESS stream): BYE and close; the effects."""
        self._begin()
        if not self.closed:
            self.send(b"* BYE " + text.encode("ascii") + b"\r\n")
            self._close()
        return self._end()

    # Input

    def feed(self, data, counted=None):
        """
        Bytes from the client; returns the effects of the commands they
        complete.  ``counted``: how many bytes the deadlines credit (all by
        default; under COMPRESS the bytes on the wire, so that a few KB of
        deflate cannot buy hours, docs/imap.md).
        """
        if self.closed:
            return []
        self._begin()
        self._resetTimer()
        self.reader.feed(data)
        self.deadlines.received(len(data) if counted is None else counted)
        self.pump()
        return self._end()

    def completed(self, effect, outcome):
        """
        The outcome of the long effect last returned (a :class:`Failed` when
        it failed); returns the effects that follow: the rest of the
        command, then those of the commands buffered after it.
        """
        self._begin()
        if self._task is not None:
            if type(outcome) is Failed:
                self._step(None, outcome.error)
            else:
                self._step(outcome)
            if not self.busy and not self.closed:
                self.pump()
        return self._end()

    def abandon(self):
        """The connection is gone with a command waiting: end it (its ``finally`` clauses run)."""
        task, self._task = self._task, None
        if task is not None:
            task.close()

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
                    self._aside(PauseReading())
            elif self._readingPaused:
                self._readingPaused = False
                self._aside(ResumeReading())
        self._watchDeadlines()

    def _handle(self, event):
        if isinstance(event, RawLine):
            if self._dialogue is not None:
                current = self._current
                self._dialogue.rawLine(event.line, secret=current is not None and current.name == "AUTHENTICATE")
            waiter, self._lineWaiter = self._lineWaiter, None
            self.reader.raw = False
            if waiter is ReadLine:
                self._step(event.line)
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
            if self._dialogue is not None:
                self._dialogue.command(event.parts)
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
            except Exception:
                # A defect in a command's grammar: this command fails, the
                # session (and the server) goes on.
                log.failure("imap: parsing a command failed", Failure())
                for part in event.parts[1::2]:
                    part.close()
                tag = event.tag.encode("ascii") if event.tag else b"*"
                self.send(tag + b" BAD [SERVERBUG] The server could not parse this command\r\n")
                return
            self._start(command)

    def _start(self, command):
        self.busy = True
        self._current = command
        self._task = self._run(command)
        self._step(None)

    def _step(self, value, error=None):
        """Run the command in progress up to its next long effect (emitted), or to its end."""
        task = self._task
        try:
            if error is not None:
                effect = task.throw(error)
            else:
                effect = task.send(value)
        except StopIteration:
            self._finished()
            return
        except BaseException:
            self._finished(Failure())
            return
        if effect is ReadLine or type(effect) is ReadLine:
            # Input, not an effect: the session holds it (pump hands the line back).
            self.reader.raw = True
            self._lineWaiter = ReadLine
            if not self._pumping and self.reader.buffered():
                # The line may have come while the command worked (IDLE
                # bringing RFC 5267 contexts up to date): hand it over.
                self.pump()
            return
        self.emit(effect)

    def _finished(self, failure=None):
        command = self._current
        self._task = None
        command.close()
        self._current = None
        self.busy = False
        if failure is not None:
            log.failure("imap: command {name} failed", failure, name=command.name)

    # Dispatch

    def _run(self, cmd):
        """The command as a generator of long effects (see the module docstring)."""
        handler = COMMANDS.get(cmd.name)
        if handler is None:
            self.tagged(cmd.tag, "BAD", "Unknown command")
            return
        states, method, kind = handler
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
                    yield StoreCall(self.view.folder, "refresh")
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
                elif self.view is not None:
                    # RFC 3501 s7.2.6: keywords another session added, in
                    # FLAGS before this command's FETCHes can show them.
                    self.sendLines(self.view.keywordLines())
            if kind is _GENERATOR:
                result = yield from method(self, cmd)
            else:
                result = method(self, cmd)
        except CommandError as e:
            self._flush(cmd)
            self.tagged(cmd.tag, e.kind, e.text, e.code)
            return
        except NoSuchFolder as e:
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Mailbox does not exist: %s" % reasonOf(e), b"NONEXISTENT")
            return
        except InvalidFolderName as e:
            # The store refuses names that could leave the account ("..", "/x", NUL).
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Invalid mailbox name: %s" % reasonOf(e), b"CANNOT")
            return
        except FolderExists:
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Mailbox exists already", b"ALREADYEXISTS")
            return
        except FolderLimitExceeded as e:
            # RFC 5530 s3 LIMIT: an implementation limit (count, length, depth).
            self._flush(cmd)
            self.tagged(cmd.tag, "NO", "Cannot do that: %s" % reasonOf(e), b"LIMIT")
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
            self.tagged(cmd.tag, "NO", "Cannot do that: %s" % reasonOf(e), b"SERVERBUG")
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
        if self.closed or result is ALREADY_ANSWERED:
            return
        self._flush(cmd)
        if self._contextsDirty() and self._expungeAllowed(cmd):
            # RFC 5267 s4.3: kept search results, where an EXPUNGE could go.
            yield from self._contextUpdates()
            if self.closed:
                return
        if result is None:
            result = ("OK", "%s completed" % cmd.name, None)
        kind, text, code = result
        self.tagged(cmd.tag, kind, text, code)

    def _flush(self, cmd=None, between=False):
        """
        Announce pending mailbox changes that may be announced now: at a
        command (``cmd``), in IDLE (neither), or between commands
        (``between``: NOTIFY, RFC 5465 s5).
        """
        if self.closed:
            return
        notify = self.notify
        if notify is not None and notify.hasPending():
            self.sendLines(self._notifyLines())
            notify = self.notify
        view = self.view
        if view is None:
            return
        allowExpunge = self._expungeAllowed(cmd)
        if between:
            if notify is None or not notify.selectedEvents():
                return  # the selected mailbox is not in the NOTIFY: as RFC 3501, at commands
            allowExpunge = notify.expungeAnyTime()
        if view.hasPending(allowExpunge):
            if allowExpunge and view.pendingExpunged and view.contexts:
                # RFC 5267 s4.3.4: REMOVEFROM before the EXPUNGE, in the numbers it ends.
                self.sendLines(self._contextExpunges())
            new = None
            if notify is not None and notify.fetchNames and view.pendingNew and "MessageNew" in notify.selectedEvents():
                new = list(view.pendingNew)
            lines = view.flush(allowExpunge, self.condstore, self.qresync, self.rev2)
            if new:
                lines += self._notifyNewLines(view, new)
            self.sendLines(lines)

    @staticmethod
    def _expungeAllowed(cmd):
        """RFC 3501 s7.4.1: whether an EXPUNGE may be sent now (no command: IDLE)."""
        return cmd is None or cmd.uid or cmd.name not in _NO_EXPUNGE

    def _wake(self, force=False):
        """
        The store told our view (or a NOTIFY watch) of a change: in IDLE,
        or between commands under NOTIFY, say it at once.  This comes
        outside the session's turn (another session's change, IDLE's
        refresh): the runner is asked to hand us TimerFired("wake").
        ``force``: a turn is wanted whatever the state (NOTIFY has folders
        to open).
        """
        wanted = force or self.idling or (self.notify is not None and not self.busy)
        if wanted and not self._wakeAsked and not self.closed:
            self._wakeAsked = True
            self.out.wake()

    # Capabilities

    def capabilities(self) -> bytes:
        caps = [b"IMAP4rev1", b"IMAP4rev2", b"LITERAL+", b"SASL-IR", b"ID", b"ENABLE", b"IDLE"]
        if self.state == NOT_AUTHENTICATED:
            secure = self.secure
            if not secure and self.shared.tlsAvailable:
                caps.append(b"STARTTLS")
            if secure or self.settings.allowPlaintext:
                caps.append(b"AUTH=PLAIN")
            else:
                caps.append(b"LOGINDISABLED")
            return b" ".join(caps)
        caps += [b"NAMESPACE", b"UIDPLUS", b"MULTIAPPEND", b"CATENATE", b"MOVE", b"UNSELECT", b"CHILDREN", b"SPECIAL-USE", b"LIST-EXTENDED",
                 b"LIST-STATUS", b"ESEARCH", b"SEARCHRES", b"CONDSTORE", b"QRESYNC", b"BINARY", b"STATUS=SIZE",
                 b"SORT", b"SORT=DISPLAY", b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT",
                 b"APPENDLIMIT=%d" % self.appendLimit(), b"UTF8=ACCEPT", b"OBJECTID", b"NOTIFY"]
        caps += [b"THREAD=" + a.encode("ascii") for a in THREAD_ALGORITHMS]
        caps += QUOTA_CAPABILITIES  # RFC 9208
        if self.compressAvailable:
            caps.append(b"COMPRESS=DEFLATE")  # RFC 4978; the runner does it
        return b" ".join(caps)

    def appendLimit(self):
        return min(self.settings.messageSize, self.settings.maxLiteral)

    # Mailbox names

    def decodeName(self, raw: bytes) -> str:
        """A mailbox name from the client: UTF-8 for IMAP4rev2 and UTF8=ACCEPT (RFC 6855 s3), modified UTF-7 before (RFC 3501 s5.1.3)."""
        if self.rev2 or self.utf8:
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
        if self.rev2 or self.utf8:
            return serialize.astring(name, utf8=True)
        return serialize.astring(serialize.encodeMailbox(name))

    # The selected mailbox

    def _resolve(self, seqset, uid):
        try:
            return self.view.resolve(seqset, uid)
        except ValueError as e:
            raise bad(str(e))


# How a command method runs: a generator of long effects, or a plain
# function (no long effect).
_GENERATOR, _PLAIN = "generator", "plain"


def _kind(method):
    if inspect.isgeneratorfunction(method):
        return _GENERATOR
    return _PLAIN


_ANY = (NOT_AUTHENTICATED, AUTHENTICATED, SELECTED)
_AUTH = (AUTHENTICATED, SELECTED)
_SEL = (SELECTED,)

# The one dispatch table: command name -> (states it is valid in, IMAPSession.cmdX).
COMMANDS = {
    "CAPABILITY": (_ANY, IMAPSession.cmdCapability),
    "NOOP": (_ANY, IMAPSession.cmdNoop),
    "LOGOUT": (_ANY, IMAPSession.cmdLogout),
    "ID": (_ANY, IMAPSession.cmdId),
    "STARTTLS": ((NOT_AUTHENTICATED,), IMAPSession.cmdStarttls),
    "LOGIN": ((NOT_AUTHENTICATED,), IMAPSession.cmdLogin),
    "AUTHENTICATE": ((NOT_AUTHENTICATED,), IMAPSession.cmdAuthenticate),
    "ENABLE": (_AUTH, IMAPSession.cmdEnable),
    "NAMESPACE": (_AUTH, IMAPSession.cmdNamespace),
    "COMPRESS": (_AUTH, IMAPSession.cmdCompress),
    "SELECT": (_AUTH, IMAPSession.cmdSelect),
    "EXAMINE": (_AUTH, IMAPSession.cmdSelect),
    "CREATE": (_AUTH, IMAPSession.cmdCreate),
    "DELETE": (_AUTH, IMAPSession.cmdDelete),
    "RENAME": (_AUTH, IMAPSession.cmdRename),
    "SUBSCRIBE": (_AUTH, IMAPSession.cmdSubscribe),
    "UNSUBSCRIBE": (_AUTH, IMAPSession.cmdSubscribe),
    "LIST": (_AUTH, IMAPSession.cmdList),
    "LSUB": (_AUTH, IMAPSession.cmdLsub),
    "STATUS": (_AUTH, IMAPSession.cmdStatus),
    "APPEND": (_AUTH, IMAPSession.cmdAppend),
    "IDLE": (_AUTH, IMAPSession.cmdIdle),
    "CHECK": (_SEL, IMAPSession.cmdCheck),
    "CLOSE": (_SEL, IMAPSession.cmdClose),
    "UNSELECT": (_SEL, IMAPSession.cmdUnselect),
    "EXPUNGE": (_SEL, IMAPSession.cmdExpunge),
    "SEARCH": (_SEL, IMAPSession.cmdSearch),
    "SORT": (_SEL, IMAPSession.cmdSort),
    "THREAD": (_SEL, IMAPSession.cmdThread),
    "CANCELUPDATE": (_SEL, IMAPSession.cmdCancelupdate),
    "FETCH": (_SEL, IMAPSession.cmdFetch),
    "STORE": (_SEL, IMAPSession.cmdStore),
    "COPY": (_SEL, IMAPSession.cmdCopy),
    "MOVE": (_SEL, IMAPSession.cmdMove),
    "GETQUOTA": (_AUTH, IMAPSession.cmdGetquota),
    "GETQUOTAROOT": (_AUTH, IMAPSession.cmdGetquotaroot),
    "SETQUOTA": (_AUTH, IMAPSession.cmdSetquota),
    "NOTIFY": (_AUTH, IMAPSession.cmdNotify),  # RFC 5465
}
COMMANDS = {name: (states, method, _kind(method)) for name, (states, method) in COMMANDS.items()}
