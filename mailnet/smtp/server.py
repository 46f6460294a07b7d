"""
The Twisted side of the SMTP server: a thin protocol that feeds bytes to a
:class:`~mailnet.smtp.session.Session` and carries out what it asks
(replies, TLS, password checks, deliveries, timeouts).

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
from mailnet.login import LoginAbandoned, LoginFailed
from mailnet.smtp import replies
from mailnet.smtp.delivery import MessageDelivery
from mailnet.smtp.session import CLOSED, SMTP, SUBMISSIONS, Session, Settings

log = Logger()

# What a client refused for too many connections gets (RFC 5321 s3.8).
REFUSAL = replies.TOO_MANY_CONNECTIONS.data

# Stop reading from a client that keeps sending while we store its message.
MAX_BUFFERED = 1024 * 1024


class SMTPServerProtocol(protocol.Protocol):
    """One SMTP connection; the session's handler."""

    def __init__(self, factory):
        self.factory = factory
        self.context = factory.context
        self.settings = factory.settings
        self.clock = factory.context.reactor
        self.session = None
        self._out = []
        self._delivery = None
        self._timer = None
        self._last = 0.0
        self._paused = False
        self._lost = False
        self.deadlines = Deadlines(self.clock, self._deadlinePassed)

    # IProtocol

    def connectionMade(self):
        self.peer = net.peerHost(self.transport)
        implicit = self.factory.listener == SUBMISSIONS
        self.session = Session(self.settings, self.context.directory, self, self.peer, tls=implicit)
        if self.factory.debug:
            self.session.trace = self._trace
            log.debug("smtp {listener}: connection from {peer}", listener=self.factory.listener, peer=self.peer)
        self.factory.sessions.add(self)
        self.session.start()
        self._flush()
        self._last = self.clock.seconds()
        self._arm(self.settings_commandTimeout())
        if self.settings.role != SMTP:
            # submission: log in within login_deadline of connecting
            self.deadlines.start("login", self.context.config.limits.login_deadline)
        self._watch()

    def dataReceived(self, data):
        self._last = self.clock.seconds()
        self.deadlines.received(len(data))
        self.session.feed(data)
        self._flush()
        self._watch()
        if self.session.waiting and not self._paused and self.session.buffered > MAX_BUFFERED:
            self._paused = True
            self.transport.pauseProducing()

    def connectionLost(self, reason=protocol.connectionDone):
        self._lost = True
        self.factory.sessions.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.deadlines.cancel()
        if self.session is not None:
            self.session.connectionLost()
        if self.factory.debug:
            log.debug("smtp: {peer} disconnected", peer=getattr(self, "peer", "?"))

    # Output

    def _flush(self):
        out = self._out
        if out:
            self._write(out[0] if len(out) == 1 else b"".join(out))
            if self.factory.debug:
                for data in out:
                    log.debug("smtp {peer} < {reply}", peer=self.peer, reply=data.decode("utf-8", "replace").rstrip())
            out.clear()

    def _write(self, data):
        """
        Send a group of replies.  On a plain TCP connection with nothing
        queued, try the socket first: Twisted's write() would otherwise wait
        for the next reactor turn and cost two epoll_ctl calls (start and
        stop watching for writability) per reply; SMTP sends a reply per
        command.  Whatever the socket does not take goes through write().
        """
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

    def _trace(self, line):
        log.debug("smtp {peer} > {line}", peer=self.peer, line=line)

    def _resume(self, method, *args):
        """Report an outcome to the session, then send its replies."""
        if self._lost:
            return
        method(*args)
        self._flush()
        self._last = self.clock.seconds()
        self._watch()
        if self._paused and not self.session.waiting:
            self._paused = False
            self.transport.resumeProducing()

    # Timeouts (RFC 5321 s4.5.3.2): one timer, checked lazily

    def settings_commandTimeout(self):
        limits = self.context.config.limits
        return limits.smtp_data_timeout if self.session.readingData else limits.smtp_command_timeout

    def _arm(self, delay):
        self._timer = self.clock.callLater(delay, self._checkTimeout)

    def _checkTimeout(self):
        self._timer = None
        if self._lost:
            return
        limit = self.settings_commandTimeout()
        if self.session.waiting:
            self._arm(limit)  # we are busy, not the client
            return
        idle = self.clock.seconds() - self._last
        if idle >= limit:
            log.info("smtp: {peer} timed out after {idle:.0f} s", peer=self.peer, idle=idle)
            self.session.timeout()
            self._flush()
        else:
            self._arm(limit - idle)

    # Deadlines (slowloris): bytes do not extend them, see mailnet.deadline

    def _watch(self):
        """Start or stop the deadlines the session's state calls for."""
        session, deadlines = self.session, self.deadlines
        if self._lost or session.state == CLOSED:
            deadlines.cancel()
            return
        limits = self.context.config.limits
        if session.midLine:
            deadlines.start("line", limits.command_deadline)
        else:
            deadlines.stop("line")
        if session.receivingMessage:
            deadlines.start("data", limits.smtp_data_deadline, rate=limits.min_data_rate)
        else:
            deadlines.stop("data")
        if session.user is not None:
            deadlines.stop("login")

    def _deadlinePassed(self, name):
        if self._lost:
            return True
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
        self.session.timeout(reply)
        self._flush()
        return True

    # Session handler

    def reply(self, reply):
        self._out.append(reply.data)

    def close(self):
        self._flush()
        self.transport.loseConnection()

    def startTLS(self):
        self._flush()  # the 220 goes out in plaintext, before the handshake
        self.transport.startTLS(self.context.tlsOptions)

    def tlsInfo(self):
        try:
            connection = self.transport.getHandle()
            return f"{connection.get_protocol_version_name()} {connection.get_cipher_name()}"
        except Exception:
            return "TLS"

    def authenticate(self, username, password):
        # The one login sequence (mailnet.login): throttle, portal, log.
        d = self.context.login.login("smtp", self.peer, username, password, IAuthenticatedUser,
                                     alive=lambda: not self._lost)

        def succeeded(result):
            avatar, logout = result
            self._resume(self.session.authResult, avatar.username)

        def failed(failure):
            if failure.check(LoginAbandoned):
                return
            # LoginBusy, or the realm failed (logged): 454, try again later.
            self._resume(self.session.authResult, None, not failure.check(LoginFailed))

        d.addCallbacks(succeeded, failed)

    def startMessage(self, envelope):
        self._delivery = MessageDelivery(self.context, envelope, self.tlsInfo() if envelope.tls else None)

    def messageData(self, data):
        self._delivery.write(data)

    def abortMessage(self):
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            delivery.abort()

    def commitMessage(self):
        delivery, self._delivery = self._delivery, None
        delivery.commit().addCallback(lambda reply: self._resume(self.session.messageResult, reply))


class SMTPFactory(protocol.Factory):
    """Builds :class:`SMTPServerProtocol` for one listener."""

    protocol = SMTPServerProtocol
    noisy = False

    def __init__(self, context, listener):
        self.context = context
        self.listener = listener
        self.settings = Settings.fromContext(context, listener)
        self.sessions = set()
        self.debug = logs._predicate.logLevelForNamespace(__name__) <= LogLevel.debug

    def buildProtocol(self, addr):
        return self.protocol(self)

    def stopFactory(self):
        # the listener is closing (service stop): tell the clients, politely
        for proto in list(self.sessions):
            if proto.session is not None and not proto.session.waiting:
                proto.session.shutdown()
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
