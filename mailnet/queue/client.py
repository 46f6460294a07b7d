"""
Our SMTP client, for relaying: a sans-I/O state machine
(:class:`ClientMachine`: reply bytes in, actions out) and a thin Twisted
protocol (:class:`SMTPClientProtocol`) that performs the actions.

One connection carries any number of transactions, one after another
(RFC 5321 s3.3): the queue hands a :class:`Transaction` to
:meth:`SMTPClientProtocol.deliver` each time the previous one is done.

What the machine does (RFC 5321 unless noted):

* EHLO, falling back to HELO when EHLO is refused (s3.2);
* STARTTLS when offered (RFC 3207), opportunistic or required; after TLS
  everything learned before is forgotten and EHLO is sent again (s4.2);
* AUTH PLAIN (RFC 4616) or LOGIN for a smarthost (RFC 4954), never before
  TLS unless the caller allows it (a smarthost on the loopback);
* PIPELINING (RFC 2920): MAIL, every RCPT and DATA in one write, every
  reply checked (s3.1), a lone dot when DATA was accepted with no
  recipient;
* SIZE (RFC 1870): declared, and a message larger than the peer's limit
  fails before MAIL;
* 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531): a message that needs one
  fails with 5.6.3 / 5.6.7 when the peer lacks it (no down-conversion);
* DSN (RFC 3461): RET, ENVID, NOTIFY and ORCPT passed on when the peer
  offers DSN;
* RSET after a failed transaction (s4.1.1.5), QUIT at the end (s4.1.1.10).

The timeouts are those of s4.5.3.2, scaled by the configuration.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import re

from twisted.internet import defer, error as ierror, interfaces, protocol
from zope.interface import implementer

from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.mail.lines import DotStuffer
from mailnet.mail.reply import Reply

log = Logger()

MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 1000


# -- Replies ---------------------------------------------------------------

_LINE = re.compile(rb"^(\d{3})([ -]?)(.*)$", re.S)


class ProtocolError(Exception):
    """The peer said something that is not SMTP."""


class ReplyParser:
    """
    Bytes in, :class:`Reply` objects out (RFC 5321 s4.2).  Lines end in
    CRLF (a bare LF is tolerated); ``250-`` continues a reply, ``250 `` or
    ``250`` ends it.  Raises :class:`ProtocolError` on a line that does not
    start with three digits, on a line longer than ``maxLine`` or a reply
    of more than ``maxLines`` lines.
    """

    def __init__(self, maxLine=MAX_REPLY_LINE, maxLines=MAX_REPLY_LINES):
        self.maxLine = maxLine
        self.maxLines = maxLines
        self._buffer = b""
        self._lines = []
        self._code = None

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies = []
        while True:
            at = self._buffer.find(b"\n")
            if at < 0:
                if len(self._buffer) > self.maxLine:
                    raise ProtocolError(f"reply line longer than {self.maxLine} bytes")
                return replies
            line, self._buffer = self._buffer[:at], self._buffer[at + 1:]
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.maxLine:
                raise ProtocolError(f"reply line longer than {self.maxLine} bytes")
            m = _LINE.match(line)
            if not m:
                raise ProtocolError(f"not an SMTP reply: {line[:80]!r}")
            code = int(m.group(1))
            if self._code is None:
                self._code = code
            elif code != self._code:
                raise ProtocolError(f"reply code changed within a reply: {self._code} then {code}")
            self._lines.append(m.group(3).decode("utf-8", "replace"))
            if len(self._lines) > self.maxLines:
                raise ProtocolError(f"reply longer than {self.maxLines} lines")
            if m.group(2) != b"-":
                replies.append(Reply.received(self._code, tuple(self._lines)))
                self._lines = []
                self._code = None


# -- Transactions ----------------------------------------------------------


@dataclasses.dataclass
class Recipient:
    """One RCPT: address and its RFC 3461 parameters as received."""

    address: str
    notify: list | None = None
    orcpt: str | None = None


@dataclasses.dataclass
class Transaction:
    """
    One message to send over an established session.

    @ivar open: a callable returning a binary file object with the message
        (used by the protocol, not the machine).
    @ivar body: ``"7BIT"``, ``"8BITMIME"`` or ``"BINARYMIME"`` (RFC 6152/3030).
    """

    sender: str
    recipients: list
    size: int = 0
    body: str = "7BIT"
    smtputf8: bool = False
    envid: str | None = None
    ret: str | None = None
    open: object = None
    tag: object = None


@dataclasses.dataclass
class Result:
    """
    The outcome of a transaction: for each recipient address, None (the
    peer accepted it with 250 after the data) or a :class:`DeliveryError`.

    @ivar dsn: the peer offered DSN (RFC 3461), so it now takes care of
        success notifications; without it, NOTIFY=SUCCESS recipients get a
        "relayed" DSN from us (RFC 3461 s5.2.2).
    @ivar reply: the final reply to the data, if one came.
    @ivar uncertain: the connection was lost after the data was sent and
        before the reply: the peer may have the message (docs/queue.md).
    """

    transaction: Transaction
    outcomes: dict
    dsn: bool = False
    reply: Reply | None = None
    uncertain: bool = False


# -- Actions the machine asks for -----------------------------------------


@dataclasses.dataclass
class Send:
    data: bytes
    show: str  # what may be logged (AUTH lines are masked)


@dataclasses.dataclass
class StartTLS:
    pass


@dataclasses.dataclass
class SendBody:
    transaction: Transaction


@dataclasses.dataclass
class Ready:
    pass


@dataclasses.dataclass
class Done:
    result: Result


@dataclasses.dataclass
class Failed:
    """The session could not be set up (or broke while idle)."""

    error: DeliveryError
    tls: bool = False


@dataclasses.dataclass
class Close:
    pass


class ClientMachine:
    """
    The client side of one SMTP connection, without I/O.

    Feed it what the peer sends (:meth:`receive`) and the other events
    (:meth:`start`, :meth:`bodySent`, :meth:`quit`, :meth:`connectionLost`,
    :meth:`timedOut`); each returns a list of actions for the transport:
    :class:`Send`, :class:`StartTLS`, :class:`SendBody`, :class:`Ready`,
    :class:`Done`, :class:`Failed`, :class:`Close`.

    @param helo: our name for EHLO/HELO.
    @param tls: ``"opportunistic"`` (STARTTLS when offered), ``"required"``
        (STARTTLS must be offered and succeed), ``"implicit"`` (TLS is on
        from the start) or ``"none"``.
    @param auth: ``(user, password)`` to log in with, or None.
    @param plainAuth: allow AUTH without TLS (a loopback smarthost).
    @param remote: the peer's name, for errors (Remote-MTA).
    """

    def __init__(self, helo, tls="opportunistic", auth=None, plainAuth=False, remote=None):
        self.helo = helo
        self.tls = tls
        self.auth = auth
        self.plainAuth = plainAuth
        self.remote = remote
        self.parser = ReplyParser()
        self.pending = collections.deque()  # (what, handler) per reply awaited
        self.extensions: dict[str, str] = {}
        self.tlsActive = tls == "implicit"
        self.state = "greeting"
        self.pending.append(("greeting", self._onGreeting))
        self.txn: Transaction | None = None
        self.sendingBody = False
        self.closeError: DeliveryError | None = None
        self._triedHelo = False
        self._skipStartTLS = False
        self._loginStep = 0

    # Facts

    @property
    def waiting(self) -> str | None:
        """What the machine waits for (picks the timeout), None when idle."""
        if self.sendingBody:
            return "body"
        if self.pending:
            return self.pending[0][0]
        return None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def has(self, extension) -> bool:
        return extension.upper() in self.extensions

    # Events

    def receive(self, data: bytes) -> list:
        try:
            replies = self.parser.feed(data)
        except ProtocolError as e:
            return self._broken(DeliveryError(451, "4.5.0", f"{self.remote or 'peer'}: {e}", True, self.remote))
        actions = []
        for reply in replies:
            if self.state == "closed":
                break
            if not self.pending:
                actions += self._broken(DeliveryError(451, "4.5.0", f"unexpected reply from {self.remote or 'peer'}: {reply}", True, self.remote))
                break
            if reply.code == 421:
                # RFC 5321 s3.8: the server is closing the channel; whatever
                # is still pending fails with this reply.
                self.closeError = reply.error(self.remote, "4.0")
            what, handler = self.pending.popleft()
            actions += handler(reply)
        return actions

    def start(self, txn: Transaction) -> list:
        """Begin a transaction; only in the ready state."""
        if self.state != "ready":
            raise RuntimeError(f"cannot start a transaction in state {self.state}")
        self.txn = txn
        self._accepted = []
        self._failed = {}
        self._mailError = None
        self._dataError = None
        self._dataReply = None
        self._rcptIndex = 0
        self._delivered = False
        problem = self._precheck(txn)
        if problem is not None:
            return self._finish(everyone=problem)
        self.state = "transaction"
        self._pipelined = self.has("PIPELINING")
        # RFC 2920 s3.1: MAIL, the RCPTs and DATA may go in one group.
        if self._pipelined:
            data = [self._mailCommand(txn)] + [self._rcptCommand(r) for r in txn.recipients] + [b"DATA"]
            self.pending.append(("MAIL", self._onMail))
            for _ in txn.recipients:
                self.pending.append(("RCPT", self._onRcpt))
            self.pending.append(("DATA", self._onData))
            return [Send(b"".join(line + b"\r\n" for line in data), " / ".join(d.decode("utf-8", "replace") for d in data))]
        self.pending.append(("MAIL", self._onMail))
        return [self._send(self._mailCommand(txn))]

    def bodySent(self) -> list:
        """The protocol has written the whole (stuffed) body and the final dot."""
        self.sendingBody = False
        return []

    def quit(self) -> list:
        if self.state in ("closed", "quitting"):
            return []
        self.state = "quitting"
        self.pending.clear()
        self.pending.append(("QUIT", lambda reply: [Close()]))
        return [self._send(b"QUIT")]

    def connectionLost(self, error: DeliveryError | None = None, tls=False) -> list:
        """The connection is gone; finish whatever was going on."""
        if self.state == "closed":
            return []
        error = self.closeError or error or DeliveryError(
            421, "4.4.2", f"connection to {self.remote or 'peer'} lost", True, None)
        return self._broken(error, tls=tls, close=False)

    def timedOut(self) -> list:
        what = self.waiting or "reply"
        error = DeliveryError(421, "4.4.2", f"{self.remote or 'peer'} did not answer {what} in time", True, None)
        return self._broken(error)

    # Session set-up

    def _send(self, line: bytes, show=None) -> Send:
        return Send(line + b"\r\n", show or line.decode("utf-8", "replace"))

    def _fail(self, error: DeliveryError, tls=False) -> list:
        """Set-up failed: say so, QUIT politely, close."""
        self.state = "quitting"
        self.pending.clear()
        self.pending.append(("QUIT", lambda reply: [Close()]))
        return [Failed(error, tls), self._send(b"QUIT")]

    def _broken(self, error: DeliveryError, tls=False, close=True) -> list:
        """The connection cannot be used any more."""
        actions = []
        if self.txn is not None:
            uncertain = self._awaitingDot()
            actions += self._finish(pending=error, uncertain=uncertain)
        elif self.state not in ("ready", "quitting"):
            actions.append(Failed(error, tls))
        self.state = "closed"
        self.pending.clear()
        self.sendingBody = False
        if close:
            actions.append(Close())
        return actions

    def _awaitingDot(self):
        return self.sendingBody or (bool(self.pending) and self.pending[0][0] == "dot")

    def _onGreeting(self, reply):
        if reply.code != 220:
            # RFC 5321 s3.1: a 554 greeting means no service here; QUIT.
            return self._fail(reply.error(self.remote, "0.0") if reply.code >= 400 else
                              DeliveryError(451, "4.5.0", f"bad greeting: {reply}", True, self.remote))
        return self._ehlo()

    def _ehlo(self):
        self.state = "ehlo"
        self.pending.append(("EHLO", self._onEhlo))
        return [self._send(b"EHLO " + self.helo.encode("idna" if not self.helo.isascii() else "ascii"))]

    def _onEhlo(self, reply):
        if reply.code == 250:
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.strip().partition(" ")
                if keyword.upper().startswith("AUTH="):  # pre-RFC 4954 form
                    keyword, params = "AUTH", keyword[5:] + " " + params
                self.extensions[keyword.upper()] = params.strip()
            return self._afterEhlo()
        if 500 <= reply.code < 600 and not self._triedHelo and not self.tlsActive:
            # RFC 5321 s3.2: a server that does not know EHLO gets HELO.
            self._triedHelo = True
            self.pending.append(("HELO", self._onHelo))
            return [self._send(b"HELO " + self.helo.encode("ascii", "replace"))]
        return self._fail(reply.error(self.remote, "0.0"))

    def _onHelo(self, reply):
        if reply.code == 250:
            self.extensions = {}
            return self._afterEhlo()
        return self._fail(reply.error(self.remote, "0.0"))

    def _afterEhlo(self):
        wantTLS = self.tls in ("opportunistic", "required")
        if wantTLS and not self.tlsActive and not self._skipStartTLS:
            if self.has("STARTTLS"):
                self.state = "starttls"
                self.pending.append(("STARTTLS", self._onStartTLS))
                return [self._send(b"STARTTLS")]
            if self.tls == "required":
                return self._fail(DeliveryError(451, "4.7.10", f"TLS is required, but {self.remote or 'the peer'} does not offer STARTTLS", True, None))
        if self.auth:
            return self._authenticate()
        return self._ready()

    def _onStartTLS(self, reply):
        if reply.code == 220:
            # RFC 3207 s4.2: forget everything learned before TLS; EHLO again.
            self.tlsActive = True
            self.extensions = {}
            return [StartTLS()] + self._ehlo()
        if self.tls == "required":
            return self._fail(DeliveryError(451, "4.7.10", f"TLS is required, but {self.remote or 'the peer'} refused STARTTLS: {reply}", True, self.remote))
        self._skipStartTLS = True
        return self._afterEhlo()

    def _authenticate(self):
        if not self.tlsActive and not self.plainAuth:
            return self._fail(DeliveryError(451, "4.7.10", f"will not send the password for {self.remote or 'the smarthost'} without TLS", True, None))
        if not self.has("AUTH"):
            return self._fail(DeliveryError(451, "4.7.0", f"{self.remote or 'the smarthost'} does not offer AUTH", True, None))
        mechanisms = self.extensions["AUTH"].upper().split()
        user, password = self.auth
        self.state = "auth"
        if "PLAIN" in mechanisms:
            # RFC 4616 s2: authzid NUL authcid NUL passwd.
            token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
            self.pending.append(("AUTH", self._onAuth))
            return [self._send(b"AUTH PLAIN " + token, "AUTH PLAIN ****")]
        if "LOGIN" in mechanisms:
            self._loginStep = 0
            self.pending.append(("AUTH", self._onLogin))
            return [self._send(b"AUTH LOGIN")]
        return self._fail(DeliveryError(451, "4.7.0", f"{self.remote or 'the smarthost'} offers no AUTH mechanism we use (PLAIN, LOGIN): {self.extensions['AUTH']}", True, None))

    def _onAuth(self, reply):
        if reply.code == 235:
            return self._ready()
        if reply.code == 334:
            # A server that wants the PLAIN response in a second line: it
            # was in the first; cancel (RFC 4954 s4).
            self.pending.append(("AUTH", self._onAuth))
            return [self._send(b"*")]
        return self._authFailed(reply)

    def _onLogin(self, reply):
        if reply.code == 334 and self._loginStep < 2:
            user, password = self.auth
            value = (user if self._loginStep == 0 else password).encode()
            self._loginStep += 1
            self.pending.append(("AUTH", self._onLogin))
            return [self._send(base64.b64encode(value), "****")]
        if reply.code == 235:
            return self._ready()
        return self._authFailed(reply)

    def _authFailed(self, reply):
        # A refused login is an operator's problem to fix: keep the mail
        # (RFC 4954 s6: 454 4.7.0 is the temporary authentication failure).
        return self._fail(DeliveryError(454, "4.7.0", f"authentication with {self.remote or 'the smarthost'} failed: {reply}", True, self.remote))

    def _ready(self):
        self.state = "ready"
        return [Ready()]

    # Transactions

    def _precheck(self, txn):
        remote = self.remote or "the peer"
        limit = self.extensions.get("SIZE")
        if self.has("SIZE") and limit and limit.isdigit() and int(limit) and txn.size > int(limit):
            # RFC 1870 s6.2: the size is a permanent problem at this peer.
            return DeliveryError(552, "5.3.4", f"message of {txn.size} bytes is larger than the {limit} bytes {remote} accepts", False, None)
        if txn.body == "BINARYMIME":
            return DeliveryError(554, "5.6.3", "the message is BINARYMIME, which this relay cannot send (no BDAT)", False, None)
        if txn.body == "8BITMIME" and not self.has("8BITMIME"):
            # RFC 6152 s3: no down-conversion here, so the message fails.
            return DeliveryError(554, "5.6.3", f"the message needs 8BITMIME, which {remote} does not offer", False, None)
        if txn.smtputf8 and not self.has("SMTPUTF8"):
            # RFC 6531 s3.2: without SMTPUTF8 at the next hop, it cannot go.
            return DeliveryError(553, "5.6.7", f"the message needs SMTPUTF8, which {remote} does not offer", False, None)
        return None

    def _encode(self, text):
        return text.encode("utf-8")

    def _mailCommand(self, txn):
        params = []
        if self.has("SIZE"):
            params.append(f"SIZE={txn.size}")
        if txn.body == "8BITMIME":
            params.append("BODY=8BITMIME")
        if txn.smtputf8:
            params.append("SMTPUTF8")
        if self.has("DSN"):
            if txn.ret:
                params.append(f"RET={txn.ret}")
            if txn.envid:
                params.append(f"ENVID={txn.envid}")
        return self._encode(f"MAIL FROM:<{txn.sender}>" + "".join(" " + p for p in params))

    def _rcptCommand(self, rcpt):
        params = []
        if self.has("DSN"):
            if rcpt.notify:
                params.append("NOTIFY=" + ",".join(rcpt.notify))
            if rcpt.orcpt:
                params.append(f"ORCPT={rcpt.orcpt}")
        return self._encode(f"RCPT TO:<{rcpt.address}>" + "".join(" " + p for p in params))

    def _onMail(self, reply):
        if reply.code != 250:
            self._mailError = reply.error(self.remote, "0.0")
            if not self._pipelined:
                return self._reset()
            return []
        if not self._pipelined:
            return self._nextRcpt()
        return []

    def _nextRcpt(self):
        rcpt = self.txn.recipients[self._rcptIndex]
        self.pending.append(("RCPT", self._onRcpt))
        return [self._send(self._rcptCommand(rcpt))]

    def _onRcpt(self, reply):
        rcpt = self.txn.recipients[self._rcptIndex]
        self._rcptIndex += 1
        if reply.code in (250, 251):
            self._accepted.append(rcpt.address)
        else:
            self._failed[rcpt.address] = reply.error(self.remote, "0.0")
        if self._pipelined:
            return []
        if self._rcptIndex < len(self.txn.recipients):
            return self._nextRcpt()
        if not self._accepted:
            return self._reset()
        self.pending.append(("DATA", self._onData))
        return [self._send(b"DATA")]

    def _onData(self, reply):
        if reply.code == 354:
            if self._mailError is not None or not self._accepted:
                # RFC 2920 s3.1: DATA accepted with no valid recipient:
                # send a lone dot, then reset.
                self.pending.append(("dot", lambda r: self._reset()))
                return [self._send(b".")]
            self.sendingBody = True
            self.pending.append(("dot", self._onDot))
            return [SendBody(self.txn)]
        if self._accepted and self._mailError is None:
            self._dataError = reply.error(self.remote, "0.0")
        return self._reset()

    def _onDot(self, reply):
        self.sendingBody = False
        self._dataReply = reply
        if 200 <= reply.code < 300:
            self._delivered = True
        else:
            self._dataError = reply.error(self.remote, "0.0")
        return self._finish()

    def _reset(self):
        self.pending.append(("RSET", self._onRset))
        return [self._send(b"RSET")]

    def _onRset(self, reply):
        actions = self._finish()
        if reply.code != 250:
            actions += self._broken(reply.error(self.remote, "0.0"))
        return actions

    def _finish(self, everyone=None, pending=None, uncertain=False):
        """Compute the outcome of each recipient and emit :class:`Done`."""
        txn = self.txn
        outcomes = {}
        for rcpt in txn.recipients:
            address = rcpt.address
            if everyone is not None:
                outcomes[address] = everyone
            elif self._mailError is not None:
                outcomes[address] = self._mailError
            elif address in self._failed:
                outcomes[address] = self._failed[address]
            elif self._dataError is not None and address in self._accepted:
                outcomes[address] = self._dataError
            elif self._delivered and address in self._accepted:
                outcomes[address] = None
            else:
                outcomes[address] = pending or DeliveryError(451, "4.5.0", "transaction did not complete", True, None)
        self.txn = None
        if self.state == "transaction":
            self.state = "ready"
        return [Done(Result(txn, outcomes, dsn=self.has("DSN"), reply=self._dataReply if everyone is None else None,
                            uncertain=uncertain))]


# -- The Twisted protocol --------------------------------------------------

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
