"""
The IMAP listener: a thin Twisted protocol around :class:`IMAPSession`.

The protocol turns transport events into session calls and runs the
effects the session returns (it mixes in
:class:`mailnet.imap.runner.IMAPRunner`) with what the runner needs:
``write``, ``drained`` (flow control: the protocol is registered as a
streaming producer with its transport, so a FETCH of a large mailbox or
message waits while the client is slow instead of piling up in memory),
``startTLS``, ``close``, ``pauseReading`` / ``resumeReading``.

After ``COMPRESS DEFLATE`` (RFC 4978) the protocol deflates what the
session writes and inflates what the client sends
(:mod:`mailnet.imap.compress`), under the session and over TLS; flow
control still works both ways: output waits on the transport as before,
and while the session has reading paused no more input is inflated (the
compressed rest waits), so a small input cannot become a large buffer.

``imap`` listens in plaintext with STARTTLS (LOGINDISABLED until TLS unless
``[auth] allow_plaintext``); ``imaps`` is wrapped in TLS by the service.
"""

from __future__ import annotations

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from zope.interface import implementer

from mailnet import net
from mailnet.imap.compress import CompressionError, Deflater, Inflater
from mailnet.imap.runner import IMAPRunner
from mailnet.imap.session import IMAPSession
from mailnet.imap.shared import IMAPSettings, Shared
from mailnet.logs import Logger
from mailnet.serving import ProtocolService

log = Logger()

REFUSAL = b"* BYE Too many connections\r\n"
WRITE_BUFFER = 256 * 1024


@implementer(IPushProducer)
class IMAPServerProtocol(IMAPRunner, protocol.Protocol):
    """One connection: runs the session's effects; also its output object."""

    def __init__(self, shared, implicitTLS=False):
        self.initIMAPRunner()
        self.shared = shared
        self.implicitTLS = implicitTLS
        self.secure = implicitTLS
        self.peer = "unknown"
        self.session = None
        self._paused = False
        self._waiters = []
        # RFC 4978 COMPRESS=DEFLATE, once the session starts it.
        self._deflater = None
        self._inflater = None
        self._readingPaused = False
        self._inflating = False
        self._inflateCall = None
        self._uncredited = 0  # compressed bytes received, not yet credited to the deadlines

    # Transport events

    def connectionMade(self):
        self.peer = net.peerHost(self.transport)
        self.secure = self.implicitTLS or ISSLTransport.providedBy(self.transport)
        # Let up to this much wait in the transport before it asks us to
        # pause (Twisted's default is 64 KB: a pause per average message).
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = WRITE_BUFFER
        self.transport.registerProducer(self, True)
        self.session = IMAPSession(self.shared, self)
        self.runEffects(self.session.start())

    def dataReceived(self, data):
        if self._inflater is None:
            self.runEffects(self.session.feed(data))
            return
        self._inflater.push(data)
        self._uncredited += len(data)
        self._inflate()

    def connectionLost(self, reason=None):
        self.stopRunner()
        self._release()
        if self._inflateCall is not None and self._inflateCall.active():
            self._inflateCall.cancel()
        self._inflateCall = None
        if self.session is not None:
            self.session.connectionLost()

    # IPushProducer: the transport's buffer is full / drained.

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._release()

    def stopProducing(self):
        self._release()

    def _release(self):
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    # The session's output

    def write(self, data):
        if self._deflater is not None:
            data = self._deflater.compress(data)
        self.transport.write(data)

    def writeSequence(self, data):
        if self._deflater is not None:
            data = self._deflater.compressSequence(data)
        self.transport.writeSequence(data)

    def drained(self):
        if not self._paused:
            return None
        d = defer.Deferred()
        self._waiters.append(d)
        return d

    def startTLS(self):
        self.transport.startTLS(self.shared.tlsOptions)
        self.secure = True

    def close(self):
        self._release()
        # TLSMemoryBIOProtocol does not send close_notify (and so never
        # closes) while a producer is registered.
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def pauseReading(self):
        self._readingPaused = True
        self.transport.pauseProducing()

    def resumeReading(self):
        self._readingPaused = False
        self.transport.resumeProducing()
        if self._inflater is not None and self._inflater.pending() and self._inflateCall is None:
            # Go on with the compressed input kept back, in a later turn
            # (we are inside the session's pump here).
            self._inflateCall = self.shared.clock.callLater(0, self._inflateLater)

    # RFC 4978 COMPRESS

    @property
    def compressed(self):
        return self._deflater is not None

    def startCompression(self, pending=b""):
        """
        Deflate everything written from now on, inflate everything read
        (RFC 4978 s3: starting right after the CRLF of the tagged OK, which
        the session has written already).  ``pending``: bytes the client
        sent after the COMPRESS command, so compressed, that the session
        had received but not read.
        """
        self._deflater = Deflater()
        self._inflater = Inflater()
        if pending:
            self.dataReceived(pending)

    def _inflateLater(self):
        self._inflateCall = None
        if self._inflater is not None and not self.session.closed:
            self._inflate()

    def _inflate(self):
        """Feed the session inflated input, one bounded chunk at a time, while it reads."""
        if self._inflating:
            return  # the loop below goes on
        self._inflating = True
        try:
            session = self.session
            inflater = self._inflater
            while not self._readingPaused and not session.closed:
                try:
                    data = inflater.next()
                except CompressionError as e:
                    log.info("imap: {peer}: closing: {e}", peer=self.peer, e=str(e))
                    # Nothing the client sends can be read any more.
                    self.runEffects(session.inputFailed("Cannot read the compressed input"))
                    return
                if not data:
                    return
                # The min_data_rate deadline counts the bytes on the wire.
                counted, self._uncredited = self._uncredited, 0
                self.runEffects(session.feed(data, counted))
        finally:
            self._inflating = False


class IMAPFactory(protocol.Factory):
    noisy = False

    def __init__(self, shared, implicitTLS):
        self.shared = shared
        self.implicitTLS = implicitTLS

    def buildProtocol(self, addr):
        p = IMAPServerProtocol(self.shared, self.implicitTLS)
        p.factory = self
        return p


class IMAPService(ProtocolService):
    """
    The IMAP listeners; owns the :class:`Shared` state (settings, open
    folders, sessions per user) of both.
    """

    name = "imap"
    listeners = ("imap", "imaps")
    implicitTLS = frozenset({"imaps"})
    REFUSAL = REFUSAL

    def __init__(self, context):
        super().__init__(context)
        self._shared = None

    @property
    def shared(self) -> Shared:
        """Made on first use, so that a server without IMAP listeners makes none."""
        if self._shared is None:
            context = self.context
            settings = IMAPSettings(context.config, hostname=context.hostname)
            self._shared = Shared(settings, context.portal, context.throttle, context.reactor,
                                  tlsAvailable=context.tlsOptions is not None, login=context.login)
            self._shared.tlsOptions = context.tlsOptions
            metrics = getattr(context, "metrics", None)
            if metrics is not None:
                metrics.watchImap(self._shared)  # mailnet_imap_idle_sessions
        return self._shared

    def factory(self, listener):
        return IMAPFactory(self.shared, implicitTLS=(listener in self.implicitTLS))


def makeService(context) -> IMAPService:
    """The protocol plug-in entry point (see :mod:`mailnet.service`)."""
    return IMAPService(context)
