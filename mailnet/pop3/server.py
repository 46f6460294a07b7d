"""
The POP3 listeners: ``pop3`` (STLS, RFC 2595) and ``pop3s`` (implicit TLS,
RFC 8314), over the state machine in :mod:`mailnet.pop3.protocol`.

This module is the thin Twisted side: bytes in (a line buffer, reading
paused when a client pipelines too far ahead), replies out in batches, the
STLS switch (dropping the input buffer), the idle timer and the deadlines.
The session's effects (the login, the maildrop lock, RETR/TOP streaming,
``\\Seen``, UPDATE) are run by :mod:`mailnet.pop3.runner`.
"""

from __future__ import annotations

from twisted.internet import protocol

from mailnet.deadline import Deadlines
from mailnet.logs import Logger
from mailnet.net import peerHost
from mailnet.pop3 import protocol as pop3
from mailnet.pop3.runner import POP3Runner
from mailnet.serving import ProtocolService
from mailnet.store.interfaces import ProcessMaildropLocks

log = Logger()

# What a client refused for too many connections gets (RFC 2449 s8.1.2).
REFUSAL = b"-ERR [SYS/TEMP] Too many connections\r\n"

# Stop reading from a client that sends this much ahead of our answers.
MAX_PENDING_INPUT = 256 * 1024
# Replies are gathered and written together (fewer TLS records and
# syscalls for pipelined commands) up to this size.
OUTPUT_BATCH = 256 * 1024


class POP3Service(ProtocolService):
    """
    The POP3 listeners.  RFC 1939 s8 (one POP3 session per maildrop): the
    store's ``maildropLock`` (across nodes on PostgreSQL); for a store
    without it, a per-process lock both listeners share.  IMAP sessions do
    not take it.
    """

    name = "pop3"
    listeners = ("pop3", "pop3s")
    implicitTLS = frozenset({"pop3s"})
    REFUSAL = REFUSAL

    def __init__(self, context):
        super().__init__(context)
        self.locks = ProcessMaildropLocks()

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


class POP3Server(POP3Runner, protocol.Protocol):
    """One POP3 connection: bytes in, the session's effects run (see
    :class:`~mailnet.pop3.runner.POP3Runner`), replies out in batches."""

    def __init__(self, context, locks, implicitTLS=False):
        self.context = context
        self.locks = locks
        self.implicitTLS = implicitTLS
        self.buffer = pop3.LineBuffer()
        self.session = None
        self.busy = False  # a long effect is outstanding: do not read more lines
        self.closing = False
        self.disconnected = False
        self._readPaused = False
        self._timer = None
        self._lastActivity = 0.0
        self._out: list[bytes] = []
        self._outSize = 0
        self._ip = self.peer = "?"
        self._debug = False
        self.loginSequence = context.login
        self.initPOP3Runner()
        self.deadlines = Deadlines(context.reactor, self._deadlinePassed)

    @property
    def stopped(self):
        return self.disconnected

    # Connection

    def connectionMade(self):
        config = self.context.config
        self._ip = self.peer = peerHost(self.transport)
        settings = pop3.POP3Settings(
            secure=self.implicitTLS,
            tlsAvailable=self.context.tlsOptions is not None,
            allowPlaintext=config.auth.allow_plaintext,
            maxAuthFailures=config.limits.auth_failures,
            hostname=self.context.hostname,
            maxLine=config.limits.pop3_line_length,
        )
        self.session = pop3.POP3Session(settings)
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
        self.write(pop3.err("Disconnected for inactivity"))
        self.flush()
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
        self.write(pop3.err(text % seconds))
        self.flush()
        self.closing = True
        self.transport.loseConnection()
        return True

    # Output

    def write(self, data):
        self._out.append(data)
        self._outSize += len(data)
        self._inline += len(data)
        if self._outSize >= OUTPUT_BATCH:
            self.flush()

    def flush(self):
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
        self.pump()

    def nextEffects(self):
        """The effects of the next buffered line, or None (see EffectRunner.pump)."""
        if self.closing:
            return None
        line = self.buffer.next(self.session.lineLimit)
        if line is None:
            return None
        if self._lookedAhead:
            self._lookedAhead -= 1
        if line is pop3.OVERLONG:
            return self.session.overlong()
        if self._debug:
            self._logCommand(line)
        return self.session.receive(line)

    def pump(self):
        POP3Runner.pump(self)
        if self._readPaused and len(self.buffer) < MAX_PENDING_INPUT // 2 and not self.disconnected:
            self._readPaused = False
            self.transport.resumeProducing()
        self._watch()

    def resumed(self):
        if not self.closing:
            self._touch()

    def _logCommand(self, line):
        if self.session.saslPending:
            return  # a SASL response carries the password
        keyword = line.split(b" ", 1)[0][:12].upper()
        if keyword in (b"PASS", b"AUTH"):
            shown = keyword.decode("ascii", "replace") + " ..."
        else:
            shown = line[:80].decode("ascii", "replace")
        log.debug("pop3: {ip}: C: {line}", ip=self._ip, line=shown)

    def closeConnection(self):
        self.closing = True
        self._cancelTimeout()
        self.transport.loseConnection()

    # STLS

    def startTLS(self):
        # RFC 2595 s4 (and RFC 3207 s4.2 for the same attack on SMTP): what
        # the client sent after STLS, before the handshake, is thrown away,
        # never executed.  (The +OK has been flushed: it goes out in the
        # clear, before the handshake.)
        self.buffer.clear()
        self._lookedAhead = 0
        self.transport.startTLS(self.context.tlsOptions)
        self.session.tlsStarted()
        log.debug("pop3: {ip}: TLS started", ip=self._ip)


def debugEnabled() -> bool:
    """Whether this module's debug lines are logged (checked per session)."""
    from twisted.logger import LogLevel

    from mailnet import logs

    return logs._predicate.logLevelForNamespace(__name__) <= LogLevel.debug
