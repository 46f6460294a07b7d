"""
The Twisted side of the SMTP server: a thin protocol that feeds bytes to a
:class:`~mailnet.smtp.session.SMTPSession` and runs the effects it returns
(replies, TLS, the login, deliveries), plus the timeouts and deadlines.

Plugged in by :func:`makeService` (an :class:`SMTPService`, see
:mod:`mailnet.serving`).  Listener roles:

* ``smtp``: MX.  Mail for local domains (and their aliases) from anyone;
  AUTH is offered after STARTTLS, and authenticated users may relay.
* ``submission``: STARTTLS, then AUTH, then MAIL (RFC 6409, RFC 3207).
* ``submissions``: the same over implicit TLS (RFC 8314); the service wraps
  the factory in TLS already.
"""

from __future__ import annotations

from twisted.internet import protocol, tcp
from twisted.logger import LogLevel

from mailnet import logs, net
from mailnet.serving import ProtocolService
from mailnet.auth import IAuthenticatedUser
from mailnet.deadline import Deadlines
from mailnet.logs import Logger
from mailnet.metrics import DISCARD
from mailnet.effects import Close, EffectRunner, Login, Send, StartTLS
from mailnet.smtp import replies
from mailnet.smtp.delivery import MessageDelivery
from mailnet.smtp.replies import Reply
from mailnet.smtp.session import SMTPSession
from mailnet.smtp.settings import SMTP, SUBMISSIONS, SMTPSettings
from mailnet.smtp.states import ENDED, MID_LINE, RECEIVING
from mailnet.smtp.transaction import AbortMessage, CommitMessage, MessageData, OpenMessage

log = Logger()

# What a client refused for too many connections gets (RFC 5321 s3.8).
REFUSAL = replies.TOO_MANY_CONNECTIONS.data

# Stop reading from a client that keeps sending while we store its message.
MAX_BUFFERED = 1024 * 1024


# The answer to an unexpected failure of a long effect (a bug; logged).
INTERNAL_ERROR = Reply(421, "4.3.0", "Internal error, closing the connection")


class SMTPServerProtocol(EffectRunner, protocol.Protocol):
    """One SMTP connection: bytes to the session, its effects run in order
    (:class:`~mailnet.effects.EffectRunner`), replies out in batches."""

    protocolName = "smtp"
    avatarInterface = IAuthenticatedUser

    def __init__(self, factory):
        self.factory = factory
        self.context = factory.context
        self.settings = factory.settings
        self.clock = factory.context.reactor
        self.session = None
        self._out = []
        self._delivery = None
        self._last = 0.0
        self._paused = False
        self.stopped = False  # the connection is gone (EffectRunner runs nothing more)
        self._flags = 0  # the session's deadlineFlags the deadlines were last set for
        self._login = False  # the login deadline runs
        self.loginSequence = factory.context.login
        self.deadlines = Deadlines(self.clock, self._deadlinePassed)
        self._metrics = getattr(factory.context, "metrics", None) or DISCARD

    # IProtocol

    def connectionMade(self):
        self.peer = net.peerHost(self.transport)
        implicit = self.factory.listener == SUBMISSIONS
        self.session = SMTPSession(self.settings, self.context.directory, self.peer, tls=implicit)
        if self.factory.debug:
            self.session.trace = self._trace
            log.debug("smtp {listener}: connection from {peer}", listener=self.factory.listener, peer=self.peer)
        self.factory.sessions.add(self)
        self.run(self.session.start())
        self._flush()
        self._last = self.clock.seconds()
        if self.settings.role != SMTP:
            # submission: log in within login_deadline of connecting
            self.deadlines.start("login", self.context.config.limits.login_deadline)
            self._login = True
        # the idle timeout shares the deadlines' timer: one per connection
        # (the line and data deadlines do not apply yet: _flags is 0)
        self.deadlines.start("idle", self.settings_commandTimeout())

    def dataReceived(self, data):
        self._last = self.clock.seconds()
        if self._flags & RECEIVING:
            self.deadlines.received(len(data))  # only the data deadline has a rate
        session = self.session
        effects = session.feed(data)
        if effects:
            self.run(effects)
        self._flush()
        flags = session.deadlineFlags()
        if flags != self._flags or self._login:
            self._watch(flags)
        if session.waiting and not self._paused and session.buffered > MAX_BUFFERED:
            self._paused = True
            self.transport.pauseProducing()

    def connectionLost(self, reason=protocol.connectionDone):
        self.stopped = True
        self.factory.sessions.discard(self)
        if not self._flags & ENDED:
            self._flags = ENDED
            self.deadlines.cancel()
        if self.session is not None:
            # Run even though the connection is gone: a message being
            # received is aborted.
            for effect in self.session.connectionLost():
                _RUN[type(effect)](self, effect)
        if self.factory.debug:
            log.debug("smtp: {peer} disconnected", peer=getattr(self, "peer", "?"))

    # Output

    def _flush(self):
        """
        Send the replies collected, in one write.  On a plain TCP connection
        with nothing queued, try the socket first: Twisted's write() would
        otherwise wait for the next reactor turn and cost two epoll_ctl calls
        (start and stop watching for writability) per reply; SMTP sends a
        reply per command.  Whatever the socket does not take goes through
        write().
        """
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        if self.factory.debug:
            for reply in out:
                log.debug("smtp {peer} < {reply}", peer=self.peer, reply=reply.decode("utf-8", "replace").rstrip())
        out.clear()
        transport = self.transport
        # Only a bare TCP transport: a TLS wrapper would forward .socket to
        # the connection under it, and the bytes would leave unencrypted.
        if (type(transport) is tcp.Server and not transport.TLS and not transport.dataBuffer
                and not transport._tempDataBuffer and not transport.disconnecting):
            try:
                sent = transport.socket.send(data)
            except OSError:
                sent = 0  # EAGAIN or an error write() will report
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    flush = _flush

    # The session holds the input (DATA and BDAT are framed by bytes, not
    # lines): there are no commands to pump, only replies to send.
    pump = _flush

    def run(self, effects):
        """
        EffectRunner.run, with the handlers looked up in :data:`_RUN` (built
        once, not a dict of bound methods per connection), and a Reply (the
        most frequent effect by far) appended to the output without a call.
        """
        out = self._out
        for effect in effects:
            if self.stopped:
                return
            if type(effect) is Reply:
                out.append(effect.data)
                if effect.code >= 400:
                    self._metrics.smtpRefusal(effect.code, effect.enhanced)  # mailnet_smtp_refusals
            else:
                _RUN[type(effect)](self, effect)

    @property
    def handlers(self):
        """EffectRunner's effect type -> handler, bound (for inspection;
        :meth:`run` uses :data:`_RUN`)."""
        return {kind: function.__get__(self) for kind, function in _RUN.items()}

    def write(self, data):
        self._out.append(data)

    def _trace(self, line):
        log.debug("smtp {peer} > {line}", peer=self.peer, line=line)

    def resumed(self):
        """A long effect completed and the session's answer has run."""
        self._last = self.clock.seconds()
        session = self.session
        flags = session.deadlineFlags()
        if flags != self._flags or self._login:
            self._watch(flags)
        if self._paused and not session.waiting:
            self._paused = False
            self.transport.resumeProducing()

    def internalError(self, failure):
        log.failure("smtp: {peer}: internal error", failure, peer=self.peer)
        return self.session.timeout(INTERNAL_ERROR)

    # Timeouts (RFC 5321 s4.5.3.2): the "idle" deadline, checked lazily

    def settings_commandTimeout(self):
        limits = self.context.config.limits
        return limits.smtp_data_timeout if self.session.readingData else limits.smtp_command_timeout

    def _checkTimeout(self):
        """The idle deadline has come: True when the client timed out (the
        connection closes), else the seconds until it is looked at again."""
        limit = self.settings_commandTimeout()
        if self.session.waiting:
            return limit  # we are busy, not the client
        idle = self.clock.seconds() - self._last
        if idle >= limit:
            log.info("smtp: {peer} timed out after {idle:.0f} s", peer=self.peer, idle=idle)
            self.run(self.session.timeout())
            self._flush()
            return True
        return limit - idle

    # Deadlines (slowloris): bytes do not extend them, see mailnet.deadline

    def _watch(self, flags=None):
        """Start or stop the deadlines the session's state calls for (each
        is touched only when that changes); ``flags``: the session's
        ``deadlineFlags()`` if the caller has them."""
        session, deadlines = self.session, self.deadlines
        if self.stopped:
            flags = ENDED
        elif flags is None:
            flags = session.deadlineFlags()
        changed, self._flags = flags ^ self._flags, flags
        if flags & ENDED:
            if changed:
                deadlines.cancel()
            return
        if changed:
            limits = self.context.config.limits
            if changed & MID_LINE:
                if flags & MID_LINE:
                    deadlines.start("line", limits.command_deadline)
                else:
                    deadlines.stop("line")
            if changed & RECEIVING:
                if flags & RECEIVING:
                    deadlines.start("data", limits.smtp_data_deadline, rate=limits.min_data_rate)
                else:
                    deadlines.stop("data")
        if self._login and session.user is not None:
            self._login = False
            deadlines.stop("login")

    def _deadlinePassed(self, name):
        if self.stopped:
            return True
        if name == "idle":
            return self._checkTimeout()
        if self.session.waiting:
            return False  # we are checking a password: not the client's fault
        limits = self.context.config.limits
        seconds, reply = {
            "line": (limits.command_deadline, replies.LINE_TIMEOUT),
            "data": (limits.smtp_data_deadline, replies.DATA_TIMEOUT),
            "login": (limits.login_deadline, replies.LOGIN_TIMEOUT),
        }[name]
        log.info("smtp: {peer}: {name} deadline passed ({seconds} s{rate}), closing", peer=self.peer, name=name,
                 seconds=seconds, rate=f" + 1 s per {limits.min_data_rate} bytes" if name == "data" else "")
        self.run(self.session.timeout(reply))
        self._flush()
        return True

    # Effects (the shared ones are run by EffectRunner, Login included)

    def runReply(self, reply):
        self._out.append(reply.data)
        if reply.code >= 400:
            self._metrics.smtpRefusal(reply.code, reply.enhanced)  # mailnet_smtp_refusals

    def closeConnection(self):
        self.transport.loseConnection()

    def startTLS(self):
        # the 220 has been flushed: it goes out in plaintext, before the handshake
        self.transport.startTLS(self.context.tlsOptions)

    def tlsInfo(self):
        try:
            connection = self.transport.getHandle()
            return f"{connection.get_protocol_version_name()} {connection.get_cipher_name()}"
        except Exception:
            return "TLS"

    def runOpenMessage(self, effect):
        envelope = effect.envelope
        self._delivery = MessageDelivery(self.context, envelope, self.tlsInfo() if envelope.tls else None)

    def runMessageData(self, effect):
        self._delivery.write(effect.data)

    def runAbortMessage(self, effect):
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            delivery.abort()

    def runCommitMessage(self, effect):
        delivery, self._delivery = self._delivery, None
        self.waitFor(effect, delivery.commit())


# The handler of each effect (EffectRunner's shared ones and SMTP's own), by
# class: one dict for every connection.
_RUN = {
    Send: SMTPServerProtocol.runSend,
    Close: SMTPServerProtocol.runClose,
    StartTLS: SMTPServerProtocol.runStartTLS,
    Login: SMTPServerProtocol.runLogin,
    Reply: SMTPServerProtocol.runReply,
    OpenMessage: SMTPServerProtocol.runOpenMessage,
    MessageData: SMTPServerProtocol.runMessageData,
    AbortMessage: SMTPServerProtocol.runAbortMessage,
    CommitMessage: SMTPServerProtocol.runCommitMessage,
}


class SMTPFactory(protocol.Factory):
    """Builds :class:`SMTPServerProtocol` for one listener."""

    protocol = SMTPServerProtocol
    noisy = False

    def __init__(self, context, listener):
        self.context = context
        self.listener = listener
        self.settings = SMTPSettings.fromContext(context, listener)
        self.sessions = set()
        self.debug = logs._predicate.logLevelForNamespace(__name__) <= LogLevel.debug

    def buildProtocol(self, addr):
        return self.protocol(self)

    def stopFactory(self):
        # the listener is closing (service stop): tell the clients, politely
        for proto in list(self.sessions):
            if proto.session is not None and not proto.session.waiting:
                proto.run(proto.session.shutdown())
                proto._flush()


class SMTPService(ProtocolService):
    """The SMTP listeners; sessions share nothing but the context."""

    name = "smtp"
    listeners = ("smtp", "submission", "submissions")
    implicitTLS = frozenset({"submissions"})
    REFUSAL = REFUSAL

    def factory(self, listener):
        return SMTPFactory(self.context, listener)


def makeService(context) -> SMTPService:
    """The protocol plug-in entry point (see :mod:`mailnet.service`)."""
    return SMTPService(context)
