"""
Our SMTP client's state machine, without I/O (:class:`ClientMachine`:
reply bytes in, actions out), and the transactions it carries
(:class:`Transaction`, :class:`Recipient`, :class:`Result`).  The replies
are parsed by :mod:`mailnet.queue.replyparser`; the Twisted protocol that
performs the actions is :class:`mailnet.queue.client.SMTPClientProtocol`.

One connection carries any number of transactions, one after another
(RFC 5321 s3.3): the queue hands a :class:`Transaction` to
:meth:`mailnet.queue.client.SMTPClientProtocol.deliver` each time the
previous one is done.

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

The machine says what it waits for (:attr:`ClientMachine.waiting`); the
protocol times that out (s4.5.3.2, scaled by the configuration).
"""

from __future__ import annotations

import base64
import collections
import dataclasses

from mailnet.errors import DeliveryError
from mailnet.mail.reply import Reply
from mailnet.queue.replyparser import ProtocolError, ReplyParser


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
