"""
Our SMTP client, for relaying: the thin Twisted protocol
(:class:`SMTPClientProtocol`) that performs the actions of the sans-I/O
:class:`~mailnet.queue.clientmachine.ClientMachine` on a real connection:
writes, the STARTTLS switch, the body streamed from its file dot-stuffed,
the reply timeouts of RFC 5321 s4.5.3.2 (scaled by the configuration).

What the client does in SMTP is listed in :mod:`mailnet.queue.clientmachine`;
the reply parser is :mod:`mailnet.queue.replyparser`.  Their public names
stay importable from here.
"""

from __future__ import annotations

from twisted.internet import defer, error as ierror, interfaces, protocol
from zope.interface import implementer

from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.mail.lines import DotStuffer
from mailnet.queue.clientmachine import (ClientMachine, Close, Done, Failed, Ready, Recipient, Result, Send, SendBody,
                                         StartTLS, Transaction)
from mailnet.queue.replyparser import MAX_REPLY_LINE, MAX_REPLY_LINES, ProtocolError, ReplyParser

# The names this module has always offered (the machine and the reply
# parser now live in their own modules).
__all__ = [
    "SMTPClientProtocol", "ClientFactory", "CHUNK", "tlsFailure",
    "ClientMachine", "Close", "Done", "Failed", "Ready", "Recipient", "Result", "Send", "SendBody", "StartTLS",
    "Transaction",
    "MAX_REPLY_LINE", "MAX_REPLY_LINES", "ProtocolError", "ReplyParser",
]

log = Logger()

CHUNK = 64 * 1024


@implementer(interfaces.IPullProducer)
class _BodyProducer:
    """Streams the message from its file, dot-stuffed, then the final dot."""

    def __init__(self, proto, source):
        self.proto = proto
        self.source = source
        self.stuffer = DotStuffer()
        self.done = False

    def resumeProducing(self):
        if self.done:
            return
        try:
            chunk = self.source.read(CHUNK)
        except OSError as e:
            self._finish()
            self.proto._bodyFailed(e)
            return
        transport = self.proto.transport
        data = self.stuffer.feed(chunk)
        # A short read of a regular file is its end.
        if len(chunk) == CHUNK:
            transport.write(data)
            self.proto._touch()
            return
        # The end of the message and the final dot in one write: a lone
        # ".\r\n" segment would wait for the peer's delayed ACK (Nagle).
        transport.write(data + self.stuffer.end())
        self._finish()
        self.proto._bodyDone()

    def _finish(self):
        self.done = True
        self.proto.transport.unregisterProducer()
        self.source.close()

    def stopProducing(self):
        if not self.done:
            self.done = True
            self.source.close()


def tlsFailure(reason) -> bool:
    """Whether a connectionLost reason is a TLS handshake/verification failure."""
    try:
        from OpenSSL import SSL
    except ImportError:  # pragma: no cover
        return False
    kinds = [SSL.Error]
    try:
        from service_identity import VerificationError

        kinds.append(VerificationError)
    except ImportError:  # pragma: no cover
        pass
    return reason is not None and reason.check(*kinds) is not None


class SMTPClientProtocol(protocol.Protocol):
    """
    Performs a :class:`ClientMachine`'s actions on a real connection.

    @ivar ready: Deferred firing with this protocol once the session is set
        up (EHLO, TLS, AUTH done), or failing with :class:`DeliveryError`
        (``tlsFailed`` set on it for a TLS failure).
    @ivar closed: Deferred firing (with None) once the connection is gone.
    """

    def __init__(self, machine: ClientMachine, clock, tlsOptions=None, replyTimeout=300, dataTimeout=600, host=None):
        self.machine = machine
        self.clock = clock
        self.tlsOptions = tlsOptions
        self.replyTimeout = replyTimeout
        self.dataTimeout = dataTimeout
        self.host = host or machine.remote
        self.ready = defer.Deferred()
        self.closed = defer.Deferred()
        self.connected = False
        self._result = None
        self._timer = None
        self._lost = False
        self.localAddress = None  # the address we connected from (TLS-RPT's sending-mta-ip)

    @property
    def alive(self) -> bool:
        return self.connected and not self._lost and self.machine.ready

    # Twisted events

    def connectionMade(self):
        self.connected = True
        try:
            self.localAddress = getattr(self.transport.getHost(), "host", None)
        except Exception:  # a test transport without addresses
            self.localAddress = None
        # Commands are small and each waits for a reply: no Nagle delays.
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except OSError:
                pass
        self._touch()

    def dataReceived(self, data):
        if self._lost:
            return
        self._run(self.machine.receive(data))

    def connectionLost(self, reason=None):
        self._lost = True
        self._cancelTimer()
        tls = self.machine.tlsActive and tlsFailure(reason)
        error = None
        if tls:
            error = DeliveryError(421, "4.7.5", f"TLS with {self.host} failed: {_reasonText(reason)}", True, None)
        self._run(self.machine.connectionLost(error, tls=tls))
        if not self.ready.called:
            # Lost before a greeting or mid set-up without a reply to blame.
            self.ready.errback(error or DeliveryError(421, "4.4.2", f"connection to {self.host} lost during set-up", True, None))
        if not self.closed.called:
            self.closed.callback(None)

    # API for the queue

    def deliver(self, txn: Transaction) -> defer.Deferred:
        """Run one transaction; fires with a :class:`Result` (never fails)."""
        if not self.alive:
            outcomes = {r.address: DeliveryError(421, "4.4.2", f"connection to {self.host} is closed", True, None) for r in txn.recipients}
            return defer.succeed(Result(txn, outcomes))
        self._result = defer.Deferred()
        d = self._result
        self._run(self.machine.start(txn))
        return d

    def quit(self) -> defer.Deferred:
        """QUIT and close; fires when the connection is gone."""
        if not self._lost:
            self._run(self.machine.quit())
        return self.closed

    def abort(self):
        if self.transport is not None and not self._lost:
            self.transport.abortConnection()

    # Performing actions

    def _run(self, actions):
        for action in actions:
            if isinstance(action, Send):
                log.debug("smtp client {host} <- {line}", host=self.host, line=action.show)
                if not self._lost:
                    self.transport.write(action.data)
            elif isinstance(action, StartTLS):
                self.transport.startTLS(self.tlsOptions)
            elif isinstance(action, SendBody):
                self._sendBody(action.transaction)
            elif isinstance(action, Ready):
                if not self.ready.called:
                    self.ready.callback(self)
            elif isinstance(action, Done):
                d, self._result = self._result, None
                if d is not None:
                    d.callback(action.result)
            elif isinstance(action, Failed):
                if not self.ready.called:
                    action.error.tlsFailed = action.tls
                    self.ready.errback(action.error)
            elif isinstance(action, Close):
                if not self._lost:
                    self.transport.loseConnection()
        self._touch()

    def _sendBody(self, txn):
        try:
            source = txn.open()
        except OSError as e:
            self._bodyFailed(e)
            return
        self.transport.registerProducer(_BodyProducer(self, source), False)

    def _bodyDone(self):
        self._run(self.machine.bodySent())

    def _bodyFailed(self, e):
        # We cannot finish the data: the only safe thing is to drop the
        # connection, so that the peer discards the partial message.
        log.error("cannot read the queued message: {e}", e=e)
        self.machine.closeError = DeliveryError(451, "4.3.0", f"cannot read the queued message: {e}", True, None)
        self.machine.sendingBody = False
        self.machine.pending.clear()
        self.abort()

    # Timeouts (RFC 5321 s4.5.3.2)

    def _touch(self):
        self._cancelTimer()
        if self._lost:
            return
        what = self.machine.waiting
        if what is None:
            return
        # RFC 5321 s4.5.3.2: 5 minutes for most replies, 2 for DATA's 354,
        # 3 per block of data sent, 10 after the final dot; the first and the
        # last are configurable, the others scale with the first.
        if what == "dot":
            seconds = self.dataTimeout
        elif what == "DATA":
            seconds = self.replyTimeout * 2 / 5
        elif what == "body":
            seconds = self.replyTimeout * 3 / 5
        elif what == "QUIT":
            seconds = min(self.replyTimeout, 30)
        else:
            seconds = self.replyTimeout
        self._timer = self.clock.callLater(seconds, self._timedOut)

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timedOut(self):
        self._timer = None
        log.info("smtp client {host}: timeout waiting for {what}", host=self.host, what=self.machine.waiting)
        self._run(self.machine.timedOut())
        self.abort()


def _reasonText(reason) -> str:
    value = getattr(reason, "value", reason)
    if isinstance(value, ierror.ConnectionDone):
        return "connection closed"
    text = str(value)
    return text[:300] if text else type(value).__name__


class ClientFactory(protocol.Factory):
    """Builds one :class:`SMTPClientProtocol` (one connection)."""

    noisy = False  # the queue logs each attempt itself

    def __init__(self, makeProtocol):
        self.makeProtocol = makeProtocol

    def buildProtocol(self, addr):
        return self.makeProtocol()
