"""
The POP3 effect runner: what a :class:`~mailnet.pop3.protocol.POP3Session`
asks for, done.  The shared effects (Send, Close, StartTLS, Login) are run by
:class:`mailnet.effects.EffectRunner`; POP3's own are here:

* :class:`~mailnet.pop3.protocol.OpenMaildrop`: the per-user maildrop lock
  (RFC 1939 s8), INBOX opened as a snapshot, a listener for messages other
  clients remove;
* :class:`~mailnet.pop3.protocol.Retrieve`: RETR/TOP, answered at once when
  the store hands over a small message in memory, else streamed through a
  producer; messages that pipelined RETR/TOP commands ask for are opened
  ahead; a retrieved message is marked ``\\Seen`` (batched);
* :class:`~mailnet.pop3.protocol.Update`: the UPDATE state's expunge.

:class:`POP3Runner` is mixed into the Twisted protocol
(:class:`mailnet.pop3.server.POP3Server`), which provides the transport, the
output batching (``write``/``flush``) and the input buffer.
"""

from __future__ import annotations

import weakref

from twisted.internet import defer, interfaces
from twisted.python import failure
from zope.interface import implementer

from mailnet.effects import Close, EffectRunner, Send
from mailnet.logs import Logger
from mailnet.mail.lines import DotStuffer
from mailnet.pop3.protocol import Maildrop, OpenMaildrop, Retrieve, State, Update, err, topChunks
from mailnet.store.interfaces import INBOX, SEEN, IAccount, IFolderListener, NoSuchMessage, messageBytes

log = Logger()

CHUNK = 65536
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


class POP3Runner(EffectRunner):
    """
    Runs a POP3 session's effects (mixed into the connection's protocol).

    @ivar locks: the per-process maildrop locks shared by the POP3
        listeners, for a store without ``maildropLock``
        (:meth:`~mailnet.store.interfaces.IMailStore.maildropLock`).
    """

    protocolName = "pop3"
    avatarInterface = IAccount

    def initPOP3Runner(self):
        self.initRunner({OpenMaildrop: self.runOpenMaildrop, Retrieve: self.runRetrieve, Update: self.runUpdate})
        self.account = None
        self.logout = None
        self.folder = None
        self.watcher = None
        self.locked = None  # the maildrop lock we hold (its release())
        self._seenPending: set[int] = set()
        self._seenFlush = None  # Deferred of the setFlags in flight
        self._seenWaiters: list[defer.Deferred] = []
        self._updating = None  # Deferred of the UPDATE in progress
        self.sender = None
        self._prefetched: dict[int, defer.Deferred] = {}  # uid -> Deferred(file)
        self._lookedAhead = 0  # buffered lines _prefetch has already seen
        self._inline = 0  # bytes written since the transport last made us wait

    def internalError(self, reason):
        log.failure("pop3: {ip}: internal error", reason, ip=self._ip)
        return [Send(err("Internal error", "SYS/TEMP")), Close()]

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
        locked, self.locked = self.locked, None
        if locked is not None:
            defer.maybeDeferred(locked.release).addErrback(
                lambda f: log.failure("pop3: {ip}: releasing the maildrop lock failed", f, ip=self._ip))
        logout, self.logout = self.logout, None
        if logout is not None:
            try:
                logout()
            except Exception:
                log.failure("pop3: logout failed")

    # Login: after the shared Login effect, the maildrop

    def runOpenMaildrop(self, effect):
        self.waitFor(effect, self._openMaildrop(effect))

    @defer.inlineCallbacks
    def _openMaildrop(self, effect):
        username, account, logout = effect.username, effect.account, effect.logout
        # RFC 1939 s8: the store's lock (across nodes on a shared store), else this process's.
        acquire = getattr(self.context.store, "maildropLock", None) or self.locks.acquire
        try:
            lock = yield acquire(username)
        except Exception:
            log.failure("pop3: {ip}: {user}: cannot take the maildrop lock", ip=self._ip, user=username)
            logout()
            return "temp"
        if lock is None:
            logout()
            log.info("pop3: {ip}: {user}: maildrop in use by another POP3 session", ip=self._ip, user=username)
            return "in-use"
        self.locked = lock
        if self.disconnected:
            self.logout = logout
            self._release()
            return None
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
            return "temp"
        self.folder = folder
        if self.disconnected:
            self._release()
            return None
        self.watcher = _ExpungeWatcher(self)
        folder.addListener(self.watcher)
        maildrop = Maildrop(((info.uid, info.size) for info in infos), folder.uidValidity)
        log.info("pop3: {ip}: {user}: maildrop open ({tls}), {n} messages", ip=self._ip, user=username,
                 tls="TLS" if self.session.secure else "plaintext", n=len(maildrop))
        return maildrop

    # RETR / TOP

    def runRetrieve(self, effect):
        if not self._retrieveNow(effect):
            self.waitFor(effect, defer.maybeDeferred(self._retrieve, effect))


    def _prefetch(self):
        """
        RFC 2449 PIPELINING: while one message is being opened or sent, open
        the ones that RETR/TOP commands already in the input buffer ask for,
        so that a store's asynchronous opens (Maildir: only when another
        program renamed the file since the last sync) overlap with sending.
        Answers still go out strictly in order.
        """
        room = PREFETCH - len(self._prefetched)
        if self.folder is None or room <= 0 or self.session.state is not State.TRANSACTION:
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
        data = messageBytes(f)  # None for a failure, or a file to stream
        if data is None:
            return False
        info = self.folder.get(action.uid)
        if info is None or info.size > WHOLE_RETR:
            return False  # large messages go through the producer
        del self._prefetched[action.uid]
        self._prefetch()
        f.close()
        stuffer = DotStuffer()
        self.write(action.header)
        self.write(stuffer.feed(data))
        self.write(stuffer.end())
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
                return None
            if action.isRetr:
                chunks = _readChunks(f)
            else:
                chunks = topChunks(f, action.bodyLines, CHUNK)
            self.write(action.header)
            return self._send(f, chunks).addCallback(lambda _: sent())

        def sent():
            if action.isRetr:
                self._markSeen(action.uid)
            return None

        def failed(reason):
            gone = reason.check(NoSuchMessage) is not None
            if not gone:
                log.failure("pop3: {ip}: cannot open message {uid}", reason, ip=self._ip, uid=action.uid)
            return "gone" if gone else "failed"

        return d.addCallbacks(opened, failed)

    def _send(self, f, chunks):
        stuffer = DotStuffer()
        first = next(chunks, None)
        if (first is None or len(first) < CHUNK) and self._inline < INLINE_BUDGET:
            # A small message: at most a chunk, so one write.
            rest = next(chunks, None) if first is not None else None
            if rest is None:
                f.close()
                self.write(stuffer.feed(first or b"") + stuffer.end())
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
        self.flush()  # what is queued goes before the message
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

    def runUpdate(self, effect):
        self._updating = self.waitFor(effect, self._update(effect))

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
                return None
        log.info("pop3: {ip}: {user} quit, {n} messages deleted", ip=self._ip, user=self.session.username, n=removed)
        return removed


def _chain(first, rest):
    yield from first
    yield from rest
