"""
The POP3 listeners: ``pop3`` (STLS, RFC 2595) and ``pop3s`` (implicit TLS,
RFC 8314), over the state machine in :mod:`mailnet.pop3.protocol`.

This module moves bytes and runs the session's actions: password checks
through the portal, the per-user maildrop lock, opening the maildrop
(INBOX) as a snapshot, streaming RETR/TOP through a producer, marking
retrieved messages ``\\Seen``, and the UPDATE state's expunge.
"""

from __future__ import annotations

import io
import weakref

from twisted.internet import defer, interfaces, protocol
from twisted.python import failure
from zope.interface import implementer

from mailnet.auth import normalize
from mailnet.deadline import Deadlines
from mailnet.login import LoginAbandoned, LoginFailed
from mailnet.logs import Logger
from mailnet.net import peerHost
from mailnet.pop3 import protocol as pop3
from mailnet.serving import ProtocolService
from mailnet.store.interfaces import INBOX, SEEN, IAccount, IFolderListener, NoSuchMessage

log = Logger()

# What a client refused for too many connections gets (RFC 2449 s8.1.2).
REFUSAL = b"-ERR [SYS/TEMP] Too many connections\r\n"

CHUNK = 65536
# Stop reading from a client that sends this much ahead of our answers.
MAX_PENDING_INPUT = 256 * 1024
# Messages opened ahead for RETR/TOP commands already pipelined.
PREFETCH = 8
# RETR of a message up to this size that the store hands over in memory
# is answered at once, in one piece (larger ones are streamed).
WHOLE_RETR = 256 * 1024
# Small answers are written without waiting for the transport.  After this
# many bytes so written, the next message goes through the producer, which
# waits until the client has read what is queued: a client that pipelines
# RETRs and does not read cannot make us hold more than about this much.
INLINE_BUDGET = 1024 * 1024
# Replies are gathered and written together (fewer TLS records and
# syscalls for pipelined commands) up to this size.
OUTPUT_BATCH = 256 * 1024


class MaildropLocks:
    """
    RFC 1939 s8: one POP3 session per maildrop at a time.  Owned by the
    :class:`POP3Service`, shared by its listeners.  IMAP sessions do not
    take it.
    """

    def __init__(self):
        self.held: set[str] = set()

    def acquire(self, username) -> bool:
        if username in self.held:
            return False
        self.held.add(username)
        return True

    def release(self, username):
        self.held.discard(username)


class POP3Service(ProtocolService):
    """The POP3 listeners; owns the :class:`MaildropLocks` both share."""

    name = "pop3"
    listeners = ("pop3", "pop3s")
    implicitTLS = frozenset({"pop3s"})
    REFUSAL = REFUSAL

    def __init__(self, context):
        super().__init__(context)
        self.locks = MaildropLocks()

    def factory(self, listener):
        return POP3Factory(self.context, self.locks, implicitTLS=(listener in self.implicitTLS))


def makeService(context) -> POP3Service:
    """The protocol plug-in entry point (see :mod:`mailnet.service`)."""
    return POP3Service(context)


class POP3Factory(protocol.Factory):
    noisy = False

    def __init__(self, context, locks, implicitTLS=False):
        self.context = context
        self.implicitTLS = implicitTLS
        self.locks = locks

    def buildProtocol(self, addr):
        p = POP3Server(self.context, self.locks, self.implicitTLS)
        p.factory = self
        return p


@implementer(IFolderListener)
class _ExpungeWatcher:
    """Tells a session when another client removes messages from INBOX."""

    def __init__(self, server):
        self.server = weakref.ref(server)

    def messagesAdded(self, folder, infos):
        pass

    def flagsChanged(self, folder, infos):
        pass

    def messagesExpunged(self, folder, uids):
        server = self.server()
        if server is not None and server.session is not None:
            server.session.messagesGone(uids)


@implementer(interfaces.IPushProducer)
class MessageSender:
    """
    Stream one message to the transport: chunks from ``chunks`` (an
    iterator of raw bytes), dot-stuffed, then the terminator.  Memory stays
    at one chunk whatever the message size: the transport pauses us when
    its buffer is full (RFC 1939 s3 multi-line response).
    """

    def __init__(self, transport, chunks, stuffer):
        self.transport = transport
        self.chunks = chunks
        self.stuffer = stuffer
        self.paused = False
        self.done = defer.Deferred()
        self._finished = False

    def start(self):
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        while not self.paused and not self._finished:
            try:
                chunk = next(self.chunks, None)
            except Exception:
                self._finish(failure.Failure())
                return
            if chunk is None:
                self.transport.write(self.stuffer.end())
                self._finish(None)
                return
            self.transport.write(self.stuffer.feed(chunk))

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self._finish(failure.Failure(ConnectionError("connection lost while sending a message")))

    def _finish(self, result):
        if self._finished:
            return
        self._finished = True
        self.transport.unregisterProducer()
        self.done.callback(result) if result is None else self.done.errback(result)


def _readChunks(f, size=CHUNK):
    while True:
        chunk = f.read(size)
        if not chunk:
            return
        yield chunk


class POP3Server(protocol.Protocol):
    """One POP3 connection."""

    def __init__(self, context, locks, implicitTLS=False):
        self.context = context
        self.locks = locks
        self.implicitTLS = implicitTLS
        self.buffer = pop3.LineBuffer()
        self.session = None
        self.busy = False  # an action is outstanding: do not read more lines
        self.closing = False
        self.disconnected = False
        self._processing = False
        self._readPaused = False
        self._timer = None
        self._lastActivity = 0.0
        self._out: list[bytes] = []
        self._outSize = 0
        self._inline = 0  # bytes written since the transport last made us wait
        self._ip = "?"
        self.account = None
        self.logout = None
        self.folder = None
        self.watcher = None
        self.locked = None  # username whose maildrop lock we hold
        self._seenPending: set[int] = set()
        self._seenFlush = None  # Deferred of the setFlags in flight
        self._seenWaiters: list[defer.Deferred] = []
        self._updating = None  # Deferred of the UPDATE in progress
        self.sender = None
        self._prefetched: dict[int, defer.Deferred] = {}  # uid -> Deferred(file)
        self._lookedAhead = 0  # buffered lines _prefetch has already seen
        self._debug = False
        self.deadlines = Deadlines(context.reactor, self._deadlinePassed)

    # Connection

    def connectionMade(self):
        config = self.context.config
        self._ip = peerHost(self.transport)
        policy = pop3.Policy(
            secure=self.implicitTLS,
            tlsAvailable=self.context.tlsOptions is not None,
            allowPlaintext=config.auth.allow_plaintext,
            maxAuthFailures=config.limits.auth_failures,
            hostname=self.context.hostname,
            maxLine=config.limits.pop3_line_length,
        )
        self.session = pop3.Session(policy)
        self._debug = debugEnabled()
        self.transport.write(self.session.greeting())
        self._touch()
        # log in within login_deadline of connecting, however busy the client
        self.deadlines.start("login", config.limits.login_deadline)

    def connectionLost(self, reason=protocol.connectionDone):
        self.disconnected = True
        self._cancelTimeout()
        self.deadlines.cancel()
        if self.sender is not None:
            self.sender.stopProducing()
        # A dropped connection deletes nothing (RFC 1939 s6: only QUIT in
        # TRANSACTION enters UPDATE).  An UPDATE already under way finishes.
        if self._updating is not None:
            self._updating.addBoth(lambda _: self._release())
        else:
            self._release()

    def _release(self):
        """Give back the folder, the lock and the account, once."""
        self._dropPrefetched()
        folder, self.folder = self.folder, None
        if folder is not None:
            if self.watcher is not None:
                folder.removeListener(self.watcher)
                self.watcher = None
            # Let a pending \Seen update finish on the handle first.
            self._seenFlushed().addBoth(lambda _: folder.close())
        if self.locked is not None:
            self.locks.release(self.locked)
            self.locked = None
        logout, self.logout = self.logout, None
        if logout is not None:
            try:
                logout()
            except Exception:
                log.failure("pop3: logout failed")

    # Timeout (RFC 1939 s3: an inactivity autologout timer of at least 10
    # minutes; the client's silence while we stream a message is not
    # inactivity).

    def _touch(self):
        """The client did something (or we finished answering it)."""
        self._lastActivity = self.context.reactor.seconds()
        if self._timer is None and not self.disconnected and not self.closing:
            self._timer = self.context.reactor.callLater(self.context.config.limits.pop3_idle_timeout, self._checkIdle)

    def _cancelTimeout(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _checkIdle(self):
        # One timer per session, re-armed lazily: commands only note the time.
        self._timer = None
        if self.disconnected or self.closing:
            return
        timeout = self.context.config.limits.pop3_idle_timeout
        if self.busy:
            left = timeout  # we are the ones working (or sending): not idle
        else:
            left = self._lastActivity + timeout - self.context.reactor.seconds()
        if left > 0:
            self._timer = self.context.reactor.callLater(left, self._checkIdle)
            return
        log.info("pop3: {ip}: closed after {s} s of inactivity", ip=self._ip, s=timeout)
        # RFC 1939 s3: the timer expiring closes without entering UPDATE.
        self._write(pop3.err("Disconnected for inactivity"))
        self._flush()
        self.closing = True
        self.transport.loseConnection()

    # Deadlines (slowloris): bytes do not extend them, see mailnet.deadline

    def _watch(self):
        """Start or stop the deadlines the session's state calls for."""
        if self.closing or self.disconnected:
            self.deadlines.cancel()
            return
        if not self.busy and self.buffer.partial:
            self.deadlines.start("line", self.context.config.limits.command_deadline)
        else:
            self.deadlines.stop("line")
        if self.session.state is not pop3.State.AUTHORIZATION:
            self.deadlines.stop("login")

    def _deadlinePassed(self, name):
        if self.disconnected or self.closing:
            return True
        if self.busy:
            return False  # we are checking a password: not the client's fault
        limits = self.context.config.limits
        if name == "login":
            seconds, text = limits.login_deadline, "Timeout: no login within %d seconds of connecting"
        else:
            seconds, text = limits.command_deadline, "Timeout: command line not completed within %d seconds"
        log.info("pop3: {ip}: {name} deadline passed ({s} s), closing", ip=self._ip, name=name, s=seconds)
        self._write(pop3.err(text % seconds))
        self._flush()
        self.closing = True
        self.transport.loseConnection()
        return True

    # Output

    def _write(self, data):
        self._out.append(data)
        self._outSize += len(data)
        self._inline += len(data)
        if self._outSize >= OUTPUT_BATCH:
            self._flush()

    def _flush(self):
        if self._out and not self.disconnected:
            self.transport.write(b"".join(self._out))
        self._out = []
        self._outSize = 0

    # Input

    def dataReceived(self, data):
        if self.closing or self.disconnected:
            return
        if not self.busy:
            self._touch()
        self.buffer.feed(data)
        if self.busy:
            self._prefetch()
        if len(self.buffer) > MAX_PENDING_INPUT and not self._readPaused:
            # The client pipelines far ahead of us: stop reading for now.
            self._readPaused = True
            self.transport.pauseProducing()
        self._process()
        self._watch()

    def _process(self):
        if self._processing:
            return
        self._processing = True
        try:
            while not self.busy and not self.closing and not self.disconnected:
                line = self.buffer.next(self.session.lineLimit)
                if line is None:
                    break
                if self._lookedAhead:
                    self._lookedAhead -= 1
                if line is pop3.OVERLONG:
                    actions = self.session.overlong()
                else:
                    if self._debug:
                        self._logCommand(line)
                    actions = self.session.receive(line)
                self._run(actions)
        finally:
            self._processing = False
            self._flush()
        if self._readPaused and len(self.buffer) < MAX_PENDING_INPUT // 2 and not self.disconnected:
            self._readPaused = False
            self.transport.resumeProducing()

    def _logCommand(self, line):
        if self.session.saslPending:
            return  # a SASL response carries the password
        keyword = line.split(b" ", 1)[0][:12].upper()
        if keyword in (b"PASS", b"AUTH"):
            shown = keyword.decode("ascii", "replace") + " ..."
        else:
            shown = line[:80].decode("ascii", "replace")
        log.debug("pop3: {ip}: C: {line}", ip=self._ip, line=shown)

    def _run(self, actions):
        for action in actions:
            if self.disconnected:
                return
            if isinstance(action, pop3.Send):
                self._write(action.data)
            elif isinstance(action, pop3.Close):
                self.closing = True
                self._cancelTimeout()
                self._flush()
                self.transport.loseConnection()
            elif isinstance(action, pop3.StartTLS):
                self._startTLS()
            elif isinstance(action, pop3.Authenticate):
                self._async(self._login, action)
            elif isinstance(action, pop3.Retrieve):
                if not self._retrieveNow(action):
                    self._async(self._retrieve, action)
            elif isinstance(action, pop3.Update):
                self._updating = self._async(self._update, action)
            else:
                raise AssertionError(action)

    def _async(self, method, action):
        """Run an action that completes later; no more lines until it does."""
        self.busy = True
        d = defer.maybeDeferred(method, action)

        def failed(f):
            if self.disconnected:
                return []  # the client went away mid-action; nothing to say
            log.failure("pop3: {ip}: internal error", f, ip=self._ip)
            return [pop3.Send(pop3.err("Internal error", "SYS/TEMP")), pop3.Close()]

        d.addErrback(failed)
        d.addCallback(self._completed)
        return d

    def _completed(self, actions):
        self.busy = False
        if self.disconnected:
            return
        self._run(actions)
        if not self.closing:
            self._touch()
        self._process()
        self._watch()

    # STLS

    def _startTLS(self):
        # RFC 2595 s4 (and RFC 3207 s4.2 for the same attack on SMTP): what
        # the client sent after STLS, before the handshake, is thrown away,
        # never executed.
        self.buffer.clear()
        self._lookedAhead = 0
        self._flush()  # the +OK goes out in the clear, before the handshake
        self.transport.startTLS(self.context.tlsOptions)
        self.session.tlsStarted()
        log.debug("pop3: {ip}: TLS started", ip=self._ip)

    # Login

    @defer.inlineCallbacks
    def _login(self, action):
        ctx = self.context
        try:
            if action.authzid and normalize(action.authzid) != normalize(action.username):
                # RFC 4616 s2: we do not let one user act as another (refused
                # before any password is checked).
                yield ctx.login.refuse("pop3", self._ip, action.username,
                                       f"may not act as {_printable(action.authzid)}")
            # The one login sequence (mailnet.login): throttle, portal, log.
            account, logout = yield ctx.login.login("pop3", self._ip, action.username, action.password, IAccount,
                                                    alive=lambda: not self.disconnected)
        except LoginAbandoned:
            return []
        except LoginFailed:
            return self.session.loginFailed("auth")
        except Exception:
            # Too many logins waiting, or the password was fine but the
            # account could not be opened (the store is down; logged): say
            # so, count nothing.
            return self.session.loginFailed("temp")
        username = account.username
        if self.disconnected:
            logout()
            return []
        if not self.locks.acquire(username):
            logout()
            log.info("pop3: {ip}: {user}: maildrop in use by another POP3 session", ip=self._ip, user=username)
            return self.session.loginFailed("in-use")
        self.locked = username
        self.account = account
        self.logout = logout
        folder = None
        try:
            folder = yield account.openFolder(INBOX)
            # RFC 1939 s4: the snapshot is taken now; also pick up what
            # other programs changed in the Maildir.
            yield folder.refresh()
            infos = folder.messages()
        except Exception:
            log.failure("pop3: {ip}: {user}: cannot open the maildrop", ip=self._ip, user=username)
            if folder is not None:
                folder.close()
            self._release()
            return self.session.loginFailed("temp")
        self.folder = folder
        if self.disconnected:
            self._release()
            return []
        self.watcher = _ExpungeWatcher(self)
        folder.addListener(self.watcher)
        maildrop = pop3.Maildrop(((info.uid, info.size) for info in infos), folder.uidValidity)
        log.info("pop3: {ip}: {user}: maildrop open ({tls}), {n} messages", ip=self._ip, user=username,
                 tls="TLS" if self.session.secure else "plaintext", n=len(maildrop))
        return self.session.loginDone(username, maildrop)

    # RETR / TOP

    def _prefetch(self):
        """
        RFC 2449 PIPELINING: while one message is being opened or sent, open
        the ones that RETR/TOP commands already in the input buffer ask for,
        so that a store's asynchronous opens (Maildir: only when another
        program renamed the file since the last sync) overlap with sending.
        Answers still go out strictly in order.
        """
        room = PREFETCH - len(self._prefetched)
        if self.folder is None or room <= 0 or self.session.state is not pop3.State.TRANSACTION:
            return
        lines = self.buffer.peek(room, skip=self._lookedAhead)
        self._lookedAhead += len(lines)
        for uid in self.session.upcomingMessages(lines):
            if uid not in self._prefetched:
                self._prefetched[uid] = defer.maybeDeferred(self.folder.openMessage, uid)

    def _dropPrefetched(self):
        prefetched, self._prefetched = self._prefetched, {}
        for d in prefetched.values():
            d.addCallbacks(lambda f: f.close(), lambda _: None)

    def _retrieveNow(self, action):
        """
        The common case of RETR, done at once: the store has opened the
        message already (Maildir opens known files synchronously) and it
        is small enough to have been read whole.  No Deferred, no producer:
        the answer joins the output batch.  Returns False to take the
        general path (:meth:`_retrieve`) instead.
        """
        if not action.isRetr or self._inline >= INLINE_BUDGET:
            return False
        d = self._prefetched.get(action.uid)
        if d is None:
            d = self._prefetched[action.uid] = defer.maybeDeferred(self.folder.openMessage, action.uid)
        if not d.called or d.paused:
            return False
        f = d.result
        if type(f) is not io.BytesIO:
            return False  # a failure, or a file to stream
        info = self.folder.get(action.uid)
        if info is None or info.size > WHOLE_RETR:
            return False  # large messages go through the producer
        del self._prefetched[action.uid]
        self._prefetch()
        data = f.getvalue()  # no copy
        f.close()
        stuffer = pop3.DotStuffer()
        self._write(action.header)
        self._write(stuffer.feed(data))
        self._write(stuffer.end())
        self._markSeen(action.uid)
        return True

    def _retrieve(self, action):
        d = self._prefetched.pop(action.uid, None)
        if d is None:
            d = defer.maybeDeferred(self.folder.openMessage, action.uid)
        self._prefetch()

        def opened(f):
            if self.disconnected:
                f.close()
                return []
            if action.isRetr:
                chunks = _readChunks(f)
            else:
                chunks = pop3.topChunks(f, action.bodyLines, CHUNK)
            self._write(action.header)
            return self._send(f, chunks).addCallback(lambda _: sent())

        def sent():
            if action.isRetr:
                self._markSeen(action.uid)
            return []

        def failed(reason):
            gone = reason.check(NoSuchMessage) is not None
            if not gone:
                log.failure("pop3: {ip}: cannot open message {uid}", reason, ip=self._ip, uid=action.uid)
            return self.session.retrieveFailed(action, gone)

        return d.addCallbacks(opened, failed)

    def _send(self, f, chunks):
        stuffer = pop3.DotStuffer()
        first = next(chunks, None)
        if (first is None or len(first) < CHUNK) and self._inline < INLINE_BUDGET:
            # A small message: at most a chunk, so one write.
            rest = next(chunks, None) if first is not None else None
            if rest is None:
                f.close()
                self._write(stuffer.feed(first or b"") + stuffer.end())
                return defer.succeed(None)
            chunks = _chain([first, rest], chunks)
        else:
            chunks = _chain([first] if first is not None else [], chunks)
        sender = self.sender = MessageSender(self.transport, chunks, stuffer)

        def done(result):
            self.sender = None
            # The sender waited whenever the transport's buffer was full:
            # little is queued now.
            self._inline = 0
            f.close()
            return result

        sender.done.addBoth(done)
        self._flush()  # what is queued goes before the message
        sender.start()
        return sender.done

    # \Seen (RFC 1939 has no flags; IMAP sees a retrieved message as read)

    def _markSeen(self, uid):
        info = self.folder.get(uid) if self.folder is not None else None
        if info is None or SEEN in info.flags:
            return
        self._seenPending.add(uid)
        if self._seenFlush is None:
            self._flushSeen(self.folder)

    def _flushSeen(self, folder):
        """
        One setFlags in flight at a time; what arrives meanwhile is batched.
        The batch still goes out if the client disconnects meanwhile (the
        folder is closed only after it: see _release).
        """
        uids = sorted(self._seenPending)
        self._seenPending.clear()
        d = defer.maybeDeferred(folder.setFlags, uids, [SEEN], "add")
        self._seenFlush = d

        def after(result):
            if isinstance(result, failure.Failure):
                log.failure("pop3: {ip}: cannot mark messages seen", result, ip=self._ip)
            self._seenFlush = None
            if self._seenPending:
                self._flushSeen(folder)
            else:
                waiters, self._seenWaiters = self._seenWaiters, []
                for w in waiters:
                    w.callback(None)

        d.addBoth(after)

    def _seenFlushed(self):
        if self._seenFlush is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._seenWaiters.append(d)
        return d

    # UPDATE

    @defer.inlineCallbacks
    def _update(self, action):
        yield self._seenFlushed()
        if self.watcher is not None:
            # Our own expunge is not news to us.
            self.folder.removeListener(self.watcher)
            self.watcher = None
        removed = 0
        if action.uids:
            try:
                gone = yield self.folder.expunge(action.uids)
                removed = len(gone)
            except Exception:
                log.failure("pop3: {ip}: {user}: cannot remove deleted messages", ip=self._ip, user=self.session.username)
                return self.session.updateDone(None)
        log.info("pop3: {ip}: {user} quit, {n} messages deleted", ip=self._ip, user=self.session.username, n=removed)
        return self.session.updateDone(removed)


def debugEnabled() -> bool:
    """Whether this module's debug lines are logged (checked per session)."""
    from twisted.logger import LogLevel

    from mailnet import logs

    return logs._predicate.logLevelForNamespace(__name__) <= LogLevel.debug


def _printable(text, limit=100):
    """A client-supplied name made safe for one log line."""
    text = text[:limit]
    return "".join(c if c.isprintable() else "?" for c in text)


def _chain(first, rest):
    yield from first
    yield from rest
