"""
The SMTP session state machine, without I/O.

An :class:`SMTPSession` is fed the bytes a client sends
(:meth:`SMTPSession.feed`) and returns the effects for its runner
(:mod:`mailnet.effects`; the runner is
:class:`mailnet.smtp.server.SMTPServerProtocol`)::

    Reply                       send it (SMTP's replies are their own Send
                                effect: no second object per reply on the
                                hot path; the runner may batch the writes)
    StartTLS()                  send what is pending, then start TLS
    Login(username, password)   check (long); outcome LoginOk or LoginError
    OpenMessage(envelope)       a message begins (DATA accepted, first BDAT)
    MessageData(data)           the next decoded piece of it
    AbortMessage()              forget it; nothing may become visible
    CommitMessage()             store it durably (long); outcome the Reply
    Close()                     send what is pending, then disconnect

The outcome of a long effect goes back through
:meth:`SMTPSession.completed`, which returns more effects; until then the
session reads nothing more, so replies always leave in the order of the
commands (RFC 2920 s3).  The session holds the byte buffer itself (DATA and
BDAT are framed by bytes, not lines), so its runner needs no command pump.

Policy questions go to ``directory`` (:class:`mailnet.auth.Directory`:
``isLocalDomain``, ``resolve``, ``mayUseSender``), which answers from memory.

Around this module, by concern (all without I/O): :mod:`mailnet.smtp.settings`
(``SMTPSettings``, the roles), :mod:`mailnet.smtp.states` (the states and
deadline flags), :mod:`mailnet.smtp.transaction` (the envelope and the
message effects), :mod:`mailnet.smtp.sasl` (AUTH, mixed into the session).
Their names stay importable from here.
"""

from __future__ import annotations

from mailnet.effects import Close, LoginOk, StartTLS
from mailnet.smtp import parser, replies
from mailnet.smtp.parser import BodyReader, ParseError
from mailnet.smtp.replies import Reply
from mailnet.smtp.sasl import AuthCommands
from mailnet.smtp.settings import SMTP, SUBMISSION, SUBMISSIONS, SMTPSettings
from mailnet.smtp.states import AUTH, BDAT, CLOSED, COMMAND, DATA, DISCARD_LINE, ENDED, MID_LINE, RECEIVING
from mailnet.smtp.transaction import (AbortMessage, AcceptedRecipient, CommitMessage, IncomingEnvelope, MessageData,
                                      OpenMessage)

# The names this module has always offered (settings, states, the envelope
# and the effects now live in their own modules).
__all__ = [
    "SMTPSession", "COMMANDS", "BDAT_SLACK",
    "SMTP", "SUBMISSION", "SUBMISSIONS", "SMTPSettings",
    "AUTH", "BDAT", "CLOSED", "COMMAND", "DATA", "DISCARD_LINE", "ENDED", "MID_LINE", "RECEIVING",
    "AbortMessage", "AcceptedRecipient", "CommitMessage", "IncomingEnvelope", "MessageData", "OpenMessage",
]

# A BDAT chunk bigger than the message size limit by more than this is not
# read: the session answers 552 and closes.
BDAT_SLACK = 1 << 20

# The effects without fields are values: one object each.
_START_TLS = StartTLS()
_CLOSE = Close()
_ABORT = AbortMessage()
_COMMIT = CommitMessage()


class SMTPSession(AuthCommands):
    """
    One SMTP connection's state.

    @param tls: TLS is on from the start (implicit TLS, RFC 8314).
    """

    # Called with each command line (str, AUTH secrets masked) when set: the
    # protocol's debug log of the dialogue.
    trace = None

    def __init__(self, settings: SMTPSettings, directory, peer: str = "unknown", tls: bool = False):
        self.settings = settings
        self.directory = directory
        self._out = []  # effects not yet handed to the runner
        self._emit = self._out.append
        self.peer = peer
        self.tls = tls
        self.state = COMMAND
        self.waiting = False  # for the outcome of Login / CommitMessage
        self.helo = None
        self.esmtp = False
        self.user = None  # authenticated username
        self.errors = 0
        self.authFailures = 0
        self.messages = 0  # messages accepted in this session
        self._buffer = b""
        self._processing = False
        self._dropInput = False
        self._inMessage = False  # a message was started and not committed
        self._resetTransaction()
        self._auth = None  # (mechanism, step, username)
        self._bdatLeft = 0
        self._bdatLast = False
        self._bdatReply = None  # the refusal for a BDAT chunk read only to be dropped

    # Driving the session

    def _take(self):
        """The effects collected since the last call (a list, or an empty tuple)."""
        out = self._out
        if not out:
            return ()
        self._out = []
        self._emit = self._out.append
        return out

    def start(self) -> list:
        """The connection is open: greet."""
        return [self.settings.greeting]

    def feed(self, data: bytes) -> list:
        """Bytes from the client; returns the effects they call for."""
        if self.state == CLOSED:
            return []
        self._buffer = self._buffer + data if self._buffer else data
        if not self._processing:  # _process, inline: this runs for every read
            self._processing = True
            try:
                self._loop()
            finally:
                self._processing = False
        out = self._out  # _take, likewise
        if not out:
            return ()
        self._out = []
        self._emit = self._out.append
        return out

    def completed(self, effect, outcome) -> list:
        """
        The outcome of a long effect: for :class:`Login` a
        :class:`~mailnet.effects.LoginOk` or
        :class:`~mailnet.effects.LoginError`; for :class:`CommitMessage` the
        Reply (250, or 451 and the like).
        """
        if type(effect) is CommitMessage:
            return self.messageResult(outcome)
        if isinstance(outcome, LoginOk):
            return self.authResult(outcome.avatar.username)
        return self.authResult(None, outcome.temporary)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handled (while waiting)."""
        return len(self._buffer)

    @property
    def readingData(self) -> bool:
        """True while a message body is expected (the data timeout applies)."""
        return self.state in (DATA, BDAT)

    @property
    def midLine(self) -> bool:
        """A command line has begun and not ended (its deadline applies)."""
        state = self.state
        return state == DISCARD_LINE or (state in (COMMAND, AUTH) and not self.waiting and bool(self._buffer))

    @property
    def receivingMessage(self) -> bool:
        """From DATA's 354 or the first BDAT chunk until the message is
        complete (the data deadline applies)."""
        return self.state in (DATA, BDAT) or self._inMessage

    def deadlineFlags(self) -> int:
        """
        Which deadlines apply now, in one call (the protocol asks after
        every read): :data:`MID_LINE` (:attr:`midLine`) | :data:`RECEIVING`
        (:attr:`receivingMessage`), or :data:`ENDED` once closed.
        """
        state = self.state
        if state == COMMAND:
            flags = MID_LINE if self._buffer and not self.waiting else 0
        elif state == DATA or state == BDAT:
            return RECEIVING
        elif state == CLOSED:
            return ENDED
        else:
            flags = MID_LINE if state == DISCARD_LINE or (state == AUTH and self._buffer and not self.waiting) else 0
        return flags | RECEIVING if self._inMessage else flags

    def authResult(self, username: str | None, temporary: bool = False) -> list:
        """
        The outcome of :class:`Login`: the canonical username, or None
        (after the failure delay); ``temporary``: try again later.
        """
        self.waiting = False
        if username:
            self.user = username
            self._emit(replies.AUTH_OK)
        elif temporary:
            self._emit(replies.AUTH_TEMPORARY)
        else:
            self.authFailures += 1
            if self.authFailures >= self.settings.maxAuthFailures:
                self._close(replies.TOO_MANY_AUTH_FAILURES)
                return self._take()
            self._emit(replies.AUTH_FAILED)
        self._process()
        return self._take()

    def messageResult(self, reply: Reply) -> list:
        """The outcome of :class:`CommitMessage`: 250, or 451 and the like."""
        self.waiting = False
        if self.state == CLOSED:
            return []
        if reply.code < 400:
            self.messages += 1
            self.errors = 0  # like Postfix: errors count "without delivering mail"
        self._resetTransaction()
        self._emit(reply)
        self._process()
        return self._take()

    def timeout(self, reply: Reply = replies.TIMEOUT) -> list:
        """The client said nothing for too long (RFC 5321 s4.5.3.2), or
        missed a deadline (``reply`` says which)."""
        if self.state != CLOSED:
            self._close(reply)
        return self._take()

    def shutdown(self) -> list:
        """The server is stopping."""
        if self.state != CLOSED:
            self._close(replies.SHUTTING_DOWN)
        return self._take()

    def connectionLost(self) -> list:
        """The connection is gone: a message being received is abandoned
        (one being committed is not)."""
        if self._inMessage:
            self._inMessage = False
            self._emit(_ABORT)
        self.state = CLOSED
        self._buffer = b""
        return self._take()

    # Internals

    def _resetTransaction(self):
        """RFC 5321 s4.1.1.5: forget sender, recipients and data."""
        if self._inMessage:
            self._inMessage = False
            self._emit(_ABORT)
        self.mail = None  # IncomingEnvelope once MAIL is accepted
        self._reader = None

    def _close(self, reply):
        self._resetTransaction()
        self._emit(reply)
        self.state = CLOSED
        self._buffer = b""
        self._emit(_CLOSE)

    def _error(self, reply: Reply):
        """A refused command: counted towards ``maxErrors``."""
        self.errors += 1
        if self.errors > self.settings.maxErrors:
            self._close(replies.TOO_MANY_ERRORS)
        else:
            self._emit(reply)

    def _process(self):
        if self._processing:
            return  # a completion arrived from inside the loop; the loop goes on
        self._processing = True
        try:
            self._loop()
        finally:
            self._processing = False

    def _loop(self):
        buf = self._buffer
        pos = 0
        maxLine = self.settings.maxLine
        while pos < len(buf) and not self.waiting:
            state = self.state
            if state == DATA:
                rest = self._reader.feed(buf[pos:] if pos else buf)
                buf, pos = (rest or b""), 0
                if rest is not None:
                    self._endData()
                continue
            if state == BDAT:
                take = min(self._bdatLeft, len(buf) - pos)
                if self._bdatReply is None:
                    self._reader.feed(buf[pos:pos + take])
                pos += take
                self._bdatLeft -= take
                if not self._bdatLeft:
                    self._endChunk()
                continue
            if state == CLOSED:
                buf, pos = b"", 0
                break
            end = buf.find(b"\n", pos)
            if end < 0:
                if len(buf) - pos > maxLine:
                    # RFC 5321 s4.5.3.1.4: a command line is at most 512
                    # octets (we allow maxLine); the rest of it is skipped
                    if state != DISCARD_LINE:
                        self._auth = None
                        self.state = DISCARD_LINE
                        self._error(replies.LINE_TOO_LONG)
                    pos = len(buf)
                break
            line = buf[pos:end]
            pos = end + 1
            if state == DISCARD_LINE:
                self.state = COMMAND
                continue
            if len(line) >= maxLine:
                self._auth = None
                self.state = COMMAND
                self._error(replies.LINE_TOO_LONG)
                continue
            if line[-1:] != b"\r":
                # RFC 5321 s2.3.8: lines end with CRLF only
                self._auth = None
                self.state = COMMAND
                self._error(replies.BARE_LINE_END)
                continue
            line = line[:-1]
            if state == AUTH:
                self._authLine(line)
            else:
                self._command(line)
            if self._dropInput:
                # STARTTLS: RFC 3207 s4.2, whatever followed it is dropped
                self._dropInput = False
                buf, pos = b"", 0
        if self.state == CLOSED:
            self._buffer = b""
        else:
            self._buffer = buf[pos:] if pos else buf

    # Commands

    def _command(self, line: bytes):
        if self.trace is not None:
            text = line.decode("utf-8", "replace")
            if text[:5].upper() == "AUTH ":
                text = " ".join(text.split()[:2] + ["****"][:len(text.split()) > 2])
            self.trace(text)
        try:
            command = parser.parseCommand(line)
            method = COMMANDS.get(command.verb)
            if method is None:
                self._error(replies.UNRECOGNIZED)
                return
            method(self, command.arg)
        except ParseError as e:
            self._error(e.reply)

    def _ehloReply(self, helo):
        s = self.settings
        key = (helo, self.tls, self._authAllowed())
        cache = s.__dict__.setdefault("_ehlo", {})
        reply = cache.get(key)
        if reply is None:
            lines = [f"{s.hostname} greets {helo}", "PIPELINING", f"SIZE {s.maxSize}", "8BITMIME", "SMTPUTF8",
                     "ENHANCEDSTATUSCODES"]
            if not self.tls and s.tlsAvailable:
                lines.append("STARTTLS")
            if self._authAllowed():
                lines.append("AUTH PLAIN LOGIN")
            lines += ["CHUNKING", "DSN"]
            # RFC 2034 s4: no enhanced codes in the reply to EHLO
            reply = Reply(250, "", lines)
            if len(cache) > 1000:
                cache.clear()
            cache[key] = reply
        return reply

    def cmdEhlo(self, arg):
        helo = parser.parseHelo(arg)
        self._resetTransaction()  # RFC 5321 s4.1.4: EHLO also resets
        self.helo, self.esmtp = helo, True
        self._emit(self._ehloReply(helo))

    def cmdHelo(self, arg):
        helo = parser.parseHelo(arg)
        self._resetTransaction()
        self.helo, self.esmtp = helo, False
        self._emit(Reply(250, "", f"{self.settings.hostname} greets {helo}"))

    def cmdNoop(self, arg):
        self._emit(replies.OK)

    def cmdHelp(self, arg):
        self._emit(replies.HELP)

    def cmdRset(self, arg):
        if arg:
            raise ParseError(replies.SYNTAX)
        self._resetTransaction()
        self._emit(replies.RESET_OK)

    def cmdQuit(self, arg):
        self._close(replies.BYE)

    def cmdVrfy(self, arg):
        # RFC 5321 s3.5.3: 252 when we will not verify (off, against harvesting)
        if not arg:
            raise ParseError(replies.SYNTAX)
        self._emit(replies.VRFY_CANNOT)

    def cmdExpn(self, arg):
        # RFC 5321 s3.5.2: EXPN may be disabled (502)
        self._error(replies.NOT_IMPLEMENTED)

    def cmdStartTLS(self, arg):
        if arg:
            raise ParseError(replies.SYNTAX)
        if self.tls:
            self._error(replies.ALREADY_TLS)
            return
        if not self.settings.tlsAvailable:
            self._error(replies.TLS_UNAVAILABLE)
            return
        self._emit(replies.READY_TLS)
        # RFC 3207 s4.2: forget everything learned before TLS (HELO, the
        # transaction, AUTH) and discard anything the client sent after the
        # command (plaintext injection, CVE-2011-0411 class)
        self._resetTransaction()
        self.helo, self.esmtp, self.user = None, False, None
        self._dropInput = True
        self.tls = True
        self._emit(_START_TLS)

    def cmdMail(self, arg):
        if self.helo is None:
            self._error(replies.NEED_HELO)
            return
        if self.mail is not None:
            self._error(replies.NESTED_MAIL)
            return
        refusal = self._needAuth()
        if refusal is not None:
            self._error(refusal)
            return
        if arg[:5].upper() != "FROM:":
            raise ParseError(replies.SYNTAX.withText("Syntax: MAIL FROM:<address> [parameters]"))
        address, rest = parser.parsePath(arg[5:], allowNull=True)
        params = parser.parseMailParams(parser.parseParams(rest) if rest else {})
        if not address.isascii() and not params.smtputf8:
            # RFC 6531 s3.4: non-ASCII addresses only with SMTPUTF8
            self._error(replies.NON_ASCII_ADDRESS)
            return
        if params.size is not None and params.size > self.settings.maxSize:
            # RFC 1870 s6.1: refuse at MAIL what is declared too big
            self._error(replies.MESSAGE_TOO_BIG)
            return
        if self.user is not None and address and not self.directory.mayUseSender(self.user, address):
            self._error(replies.SENDER_NOT_OWNED.withText(f"<{address}>: sender address not owned by {self.user}"))
            return
        if self.user is None and address and self.settings.refuseLocalSenders:
            domain = self._localSenderDomain(address)
            if domain is not None:
                # RFC 5321 s3.3: the server may refuse MAIL FROM.  Our users
                # send with a login, so without one this is a forgery.
                self._error(replies.LOCAL_SENDER.withText(f"{domain} is a local domain here: log in to send as it"))
                return
        self.mail = IncomingEnvelope(
            sender=address, recipients=[], helo=self.helo, peer=self.peer, tls=self.tls, auth=self.user,
            esmtp=self.esmtp, smtputf8=params.smtputf8, body=params.body, size=params.size,
            ret=params.ret, envid=params.envid,
        )
        self._emit(replies.SENDER_OK)

    def _localSenderDomain(self, address):
        """The domain of ``address`` when it is one of our local domains or a subdomain of one."""
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if domain.startswith("["):
            return None
        labels = domain.split(".")
        for i in range(len(labels) - 1 if len(labels) > 1 else 1):
            if self.directory.isLocalDomain(".".join(labels[i:])):
                return domain
        return None

    def cmdRcpt(self, arg):
        mail = self.mail
        if mail is None:
            self._error(replies.NEED_MAIL)
            return
        if arg[:3].upper() != "TO:":
            raise ParseError(replies.SYNTAX.withText("Syntax: RCPT TO:<address> [parameters]"))
        address, rest = parser.parsePath(arg[3:], allowNull=False, allowPostmaster=True)
        params = parser.parseRcptParams(parser.parseParams(rest), mail.smtputf8) if rest else None
        if len(mail.recipients) >= self.settings.maxRecipients:
            # RFC 5321 s4.5.3.1.10: 452, the client sends the rest later
            self._emit(replies.TOO_MANY_RECIPIENTS)
            return
        if not address.isascii() and not mail.smtputf8:
            self._error(replies.NON_ASCII_ADDRESS)
            return
        if address == "postmaster":
            address = "postmaster@" + self.settings.postmasterDomain
        domain = address.rpartition("@")[2]
        srs = self.settings.srs
        if srs is not None and srs.isOurs(address):
            # A bounce to an address our queue wrote in MAIL FROM when it
            # forwarded (SRS): back to the original sender, checked first
            # (a catch-all must not swallow it).
            original, refusal = srs.inbound(address, mail.sender)
            if refusal is not None:
                self._error(refusal)
                return
            local, remote = [], [original]
            if self.directory.isLocalDomain(original.rpartition("@")[2]):
                resolution = self.directory.resolve(original)
                if resolution is None:
                    self._error(replies.UNKNOWN_USER.withText(f"<{address}>: no such user here"))
                    return
                local, remote = resolution.local, resolution.remote
        elif not domain.startswith("[") and self.directory.isLocalDomain(domain):
            resolution = self.directory.resolve(address)
            if resolution is None:
                self._error(replies.UNKNOWN_USER.withText(f"<{address}>: no such user here"))
                return
            local, remote = resolution.local, resolution.remote
            if self.settings.quota is not None and len(local) == 1 and not remote:
                # RFC 1870 s6.2, RFC 3463 X.2.2: a full mailbox is refused
                # here, per recipient (452, the client retries that one
                # later); 552 when the declared SIZE alone is above its
                # quota.  An alias to several mailboxes is not refused for
                # one of them (docs/smtp.md "Quota").
                refusal = self.settings.quota(local[0], mail.size or 0)
                if refusal is not None:
                    self._emit(Reply(refusal.code, refusal.enhanced, f"<{address}>: {refusal.message}"))
                    return
        elif self.user is None:
            # no open relay: other domains only for authenticated users
            self._error(replies.RELAY_DENIED.withText(f"<{address}>: relay access denied"))
            return
        else:
            local, remote = [], [address]
        mail.recipients.append(AcceptedRecipient(
            address, params.orcpt if params else None, params.notify if params else None, local, remote))
        self._emit(replies.RECIPIENT_OK)

    def cmdData(self, arg):
        if arg:
            raise ParseError(replies.SYNTAX)
        if self.mail is None:
            self._error(replies.NEED_MAIL)
            return
        if self._inMessage:
            # RFC 3030 s2: DATA may not follow BDAT in one transaction
            self._error(replies.BAD_SEQUENCE.withText("DATA after BDAT; send RSET"))
            return
        if not self.mail.recipients:
            # RFC 5321 s3.3: 554 when no recipient was accepted
            self._error(replies.NO_VALID_RECIPIENTS)
            return
        self._emit(replies.START_DATA)
        self._inMessage = True
        self._emit(OpenMessage(self.mail))
        s = self.settings
        self._reader = BodyReader(self._messageData, s.maxLine, s.maxSize, dotted=True)
        self.state = DATA

    def _messageData(self, data):
        self._emit(MessageData(data))

    def _endData(self):
        self.state = COMMAND
        error = self._reader.error
        if error is not None:
            self._resetTransaction()
            self._error(error)
            return
        self._commit()

    def _commit(self):
        # the message is the runner's now: connectionLost must not abort it
        self._inMessage = False
        self._reader = None
        self.waiting = True
        self._emit(_COMMIT)

    def cmdBdat(self, arg):
        size, last = parser.parseBdat(arg)
        if size > self.settings.maxSize + BDAT_SLACK:
            # Reading (and dropping) a chunk that can never be accepted would
            # hold the session for as long as the client cares to send: say
            # why, and close (as IMAP does for such literals).
            self._close(replies.MESSAGE_TOO_BIG.withText(
                f"BDAT chunk of {size} octets exceeds the maximum message size ({self.settings.maxSize}); closing"))
            return
        # RFC 3030 s2: the chunk is read in every case (else its bytes would
        # be taken for commands); a refusal is sent after it
        self._bdatLeft, self._bdatLast, self._bdatReply = size, last, None
        if self.mail is None:
            self._bdatReply = replies.NEED_MAIL
        elif not self.mail.recipients:
            self._bdatReply = replies.NO_VALID_RECIPIENTS
        elif not self._inMessage:
            self._inMessage = True
            self._emit(OpenMessage(self.mail))
            s = self.settings
            self._reader = BodyReader(self._messageData, s.maxLine, s.maxSize, dotted=False)
        self.state = BDAT
        if not size:
            self._endChunk()

    def _endChunk(self):
        self.state = COMMAND
        if self._bdatReply is not None:
            reply, self._bdatReply = self._bdatReply, None
            self._error(reply)
            return
        reader = self._reader
        if self._bdatLast:
            reader.finish()
        if reader.error is not None:
            # RFC 3030 s2: the transaction has failed; later chunks of it get
            # 503 (no MAIL) and are read and dropped
            self._resetTransaction()
            self._error(reader.error)
            return
        if self._bdatLast:
            self._commit()
        else:
            self._emit(Reply(250, "2.0.0", f"{reader.size} octets received"))


# The commands: verb -> SMTPSession method (each checks the state it needs
# and gives the reply RFC 5321 names for the wrong one).
COMMANDS = {
    "EHLO": SMTPSession.cmdEhlo,
    "HELO": SMTPSession.cmdHelo,
    "NOOP": SMTPSession.cmdNoop,
    "HELP": SMTPSession.cmdHelp,
    "RSET": SMTPSession.cmdRset,
    "QUIT": SMTPSession.cmdQuit,
    "VRFY": SMTPSession.cmdVrfy,
    "EXPN": SMTPSession.cmdExpn,
    "STARTTLS": SMTPSession.cmdStartTLS,
    "AUTH": SMTPSession.cmdAuth,
    "MAIL": SMTPSession.cmdMail,
    "RCPT": SMTPSession.cmdRcpt,
    "DATA": SMTPSession.cmdData,
    "BDAT": SMTPSession.cmdBdat,
}
