"""
Fan-out of one received message: one store delivery for every local
mailbox, one spool item for every remote recipient, trace headers.

The SMTP protocol streams the body in (:meth:`MessageDelivery.write`) and
asks for :meth:`MessageDelivery.commit`, whose Deferred fires with the reply
to send: 250 only once every copy is on stable storage.

Failure rules:

* Nothing of a message becomes visible unless the client gets a 250: the
  store copy and the spool item are committed one after the other (store
  first), and if the store commit fails the spool item is aborted.
* If the store commit succeeds and the spool commit then fails, the client
  gets 451 and will send again: the local recipients may get the message
  twice, but nothing is lost (RFC 5321 s6.1 prefers that to a loss).
"""

from __future__ import annotations

import email.utils
import secrets
import time

from twisted.internet import defer
from twisted.python.failure import Failure

from mailnet.errors import DeliveryError
from mailnet.localdelivery import LocalDelivery, diskProblem, quotaRefusal, storeFailure
from mailnet.metrics import DISCARD, reasonClass
from mailnet.logs import Logger
from mailnet.mail.codecs import encodeXtext
from mailnet.queue.spool import newQueueId
from mailnet.smtp.replies import Reply

log = Logger()

MAX_RECEIVED = 100  # RFC 5321 s6.3: loop detection threshold, "at least 100"

_dateCache = [0, ""]


def _date(now: float) -> str:
    second = int(now)
    if _dateCache[0] != second:
        _dateCache[0] = second
        _dateCache[1] = email.utils.formatdate(second, localtime=True)
    return _dateCache[1]


def withProtocol(envelope) -> str:
    """RFC 3848 / RFC 6531 s3.7.3 "with" keyword: ESMTP, ESMTPSA, UTF8SMTPS..."""
    if not envelope.esmtp:
        return "SMTP"
    base = "UTF8SMTP" if envelope.smtputf8 else "ESMTP"
    return base + ("S" if envelope.tls else "") + ("A" if envelope.auth else "")


def _clean(text: str, ascii: bool) -> str:
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    if ascii and not text.isascii():
        text = text.encode("ascii", "replace").decode("ascii")
    return text


def receivedHeader(envelope, hostname: str, messageId: str, tlsInfo: str | None = None, now=None) -> bytes:
    """
    The Received header (RFC 5321 s4.4), folded, with CRLF:

        Received: from client.example ([192.0.2.1])
                by mx.example.org (mailnet) with ESMTPS id 6650e0c1a2b3c
                (TLSv1.3 TLS_AES_256_GCM_SHA384)
                for <user@example.org>; Tue, 4 Jun 2024 10:00:00 +0200

    ``for`` is given only for single-recipient messages, so as not to
    disclose the other (Bcc) recipients.
    """
    ascii = not envelope.smtputf8
    peer = envelope.peer
    literal = f"[IPv6:{peer}]" if ":" in peer else f"[{peer}]"
    lines = [f"Received: from {_clean(envelope.helo, ascii)} ({literal})",
             f"\tby {hostname} (mailnet) with {withProtocol(envelope)} id {messageId}"]
    if envelope.auth:
        lines[-1] += f" (authenticated as {_clean(envelope.auth, ascii)})"
    if tlsInfo:
        lines.append(f"\t({tlsInfo})")
    when = _date(time.time() if now is None else now)
    if len(envelope.recipients) == 1:
        lines.append(f"\tfor <{_clean(envelope.recipients[0].address, ascii)}>; {when}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{when}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def honouredNotify(notify, envelope, policy="failure"):
    """
    The NOTIFY we act on for one recipient (RFC 3461 s4.1; None = default).

    A success or delay report goes to the envelope sender, which an
    unauthenticated (MX) client chooses freely: honouring NOTIFY=SUCCESS
    there lets anyone have us mail reports to any address (backscatter,
    RFC 3461 s6.3).  So for such a client, unless ``[queue] mx_notify`` is
    "all", a NOTIFY with SUCCESS or DELAY is treated as the default, which
    for us means failure reports only; NEVER and FAILURE are kept.
    Authenticated senders (submission) get what they ask for.

    A sender whose MAIL FROM domain passed SPF on our MX
    (``envelope.senderVerified``, set by :meth:`MessageDelivery._filtered`
    from the checks' verdict) is trusted like an authenticated one: the
    domain itself says the client may use that return path, so a report
    sent there goes back to the sender, not to a forged victim.
    """
    if not notify or envelope.auth or policy == "all" or envelope.senderVerified:
        return notify
    if "SUCCESS" in notify or "DELAY" in notify:
        return ["FAILURE"]
    return notify


class MessageDelivery:
    """
    One message on its way to the store and the spool.

    @param context: the :class:`~mailnet.service.MailContext` (``store``,
        ``spool``, ``hostname``).
    @param envelope: the session's :class:`~mailnet.smtp.transaction.IncomingEnvelope`.
    """

    def __init__(self, context, envelope, tlsInfo=None):
        self.context = context
        self.envelope = envelope
        self.id = newQueueId()
        self.failure = None  # DeliveryError once something went wrong
        self.size = 0
        self._store = None
        self._spool = None
        self._inHeader = True
        self._received = 0
        # RFC 6409 s8.3: a submission server may add a missing Date and
        # Message-ID (some receivers refuse mail without a Message-ID).
        self._fixups = {b"date", b"message-id"} if envelope.auth else None
        self._plan()
        trace = receivedHeader(envelope, context.hostname, self.id, tlsInfo)
        # Issue 16's hook (mailnet.mailauth.filter): a message filter that
        # signs or checks the message holds it until its verdict; the store
        # and the spool are opened then (_filtered).
        self.verdict = None
        messageFilter = getattr(context, "messageFilter", None)
        self._filter = messageFilter(envelope) if messageFilter is not None else None
        # A check of the header section alone (the From rule with [mailauth]
        # inbound off): the message streams as usual and is aborted on refusal.
        self._headerCheck = None
        if self._filter is None and messageFilter is not None and not envelope.auth:
            self._headerCheck = messageFilter.headerCheck(envelope)
            self._headerSeen = b""
        if self._filter is not None:
            self._trace = trace
        else:
            self._open(trace)

    def _plan(self):
        """
        ``self.local`` (the mailboxes to store into now) and ``self.remote``
        (the spool's recipients), from the envelope and the NOTIFY we honour.
        Made again at the verdict when the checks verified the sender
        (:meth:`_filtered`): a NOTIFY=SUCCESS then sends a local recipient
        through the spool, which writes the "delivered" DSN.
        """
        envelope = self.envelope
        local = []
        remote = {}
        config = getattr(self.context, "config", None)
        policy = config.queue.mx_notify if config is not None else "failure"
        for rcpt in envelope.recipients:
            notify = honouredNotify(rcpt.notify, envelope, policy)
            if rcpt.local and envelope.sender and notify and "SUCCESS" in notify:
                # RFC 3461 s5.2.2: NOTIFY=SUCCESS asks for a "delivered" (or
                # "expanded") DSN.  The queue delivers into the store and
                # writes that DSN, so such a recipient goes through the
                # spool as it was given; the queue expands aliases again.
                key = rcpt.address.lower()
                if key not in remote:
                    remote[key] = {"address": rcpt.address, "orcpt": rcpt.orcpt, "notify": notify}
                continue
            for user in rcpt.local:
                if user not in local:
                    local.append(user)
            for address in rcpt.remote:
                if address.lower() in remote:
                    continue
                orcpt = rcpt.orcpt
                if orcpt is None and address != rcpt.address:
                    # RFC 3461 s4.2: keep the address the client gave (an alias)
                    orcpt = "rfc822;" + encodeXtext(rcpt.address)
                remote[address.lower()] = {"address": address, "orcpt": orcpt, "notify": notify}
        self.local = local
        self.remote = list(remote.values())

    def _open(self, trace, folder=None, spoolHead=b""):
        context, envelope, local = self.context, self.envelope, self.local
        try:
            if local:
                self._store = LocalDelivery(context.store, local, envelope.sender, trace, folder,
                                            metrics=getattr(context, "metrics", None))
            if self.remote:
                self._spool = context.spool.newMessage(
                    envelope.sender, self.remote, envid=envelope.envid, ret=envelope.ret,
                    smtputf8=envelope.smtputf8, body=envelope.body,
                    client=f"{envelope.helo} [{envelope.peer}]", auth=envelope.auth,
                    id=self.id,  # one id for the message in SMTP's, the queue's and the store's log lines
                )
                # spoolHead: the ARC set of a forwarded copy, on top (RFC 8617 s5.1)
                self._spool.write(spoolHead + trace)
        except Exception as e:
            self._fail(e, "opening")

    def _fail(self, exception, when, failure=None):
        """``failure``: the Failure, outside an ``except`` block."""
        if self.failure is None:
            if isinstance(exception, DeliveryError):
                self.failure = exception
            else:
                # The disk failed, not the code: one line (no path, no
                # traceback).  Anything else is a bug: with its traceback.
                text = diskProblem(exception)
                if text is not None:
                    log.error("message {id}: error {when} it: {error}", id=self.id, when=when, error=text)
                else:
                    log.failure("message {id}: error {when} it: {error}", failure, id=self.id, when=when,
                                error=exception)
                self.failure = storeFailure(exception)
        self.abort()

    def write(self, data: bytes):
        """The next piece of the message (canonical CRLF form)."""
        if self.failure is not None:
            return
        if self._inHeader:
            data = self._scanHeader(data)
        self.size += len(data)
        try:
            if self._filter is not None:
                self._filter.write(data)
                return
            if self._store is not None:
                self._store.write(data)
            if self._spool is not None:
                self._spool.write(data)
        except Exception as e:
            self._fail(e, "writing")

    def _scanHeader(self, data: bytes) -> bytes:
        """Count Received fields; returns ``data``, with the missing
        submission headers inserted where the header section ends."""
        # Pieces start at line starts (BodyReader), so the header ends at the
        # first empty line of some piece.
        if data[:2] == b"\r\n":
            self._inHeader = False
            if self._headerCheck is not None:
                self._checkHeader()
            return self._missingHeaders() + data if self._fixups else data
        end = data.find(b"\r\n\r\n")
        header = data
        if end >= 0:
            self._inHeader = False
            header = data[:end + 2]
        head = header[:9].lower() == b"received:"
        self._received += head + header.lower().count(b"\r\nreceived:")
        if self._received > MAX_RECEIVED:
            self._fail(DeliveryError(554, "5.4.6", "Too many Received headers: mail loop?"), "reading")
        if self._headerCheck is not None:
            self._headerSeen += header
            if end >= 0:
                self._checkHeader()
        if self._fixups:
            for line in header.split(b"\r\n"):
                if line and line[:1] not in b" \t":
                    self._fixups.discard(line.partition(b":")[0].strip().lower())
            if end >= 0:
                return header + self._missingHeaders() + data[end + 2:]
        return data

    def _checkHeader(self):
        check, self._headerCheck = self._headerCheck, None
        header, self._headerSeen = self._headerSeen, b""
        reply = check(header)
        if reply is not None and self.failure is None:
            self._fail(DeliveryError(reply.code, reply.enhanced, reply.text), "reading")

    def _missingHeaders(self) -> bytes:
        missing, self._fixups = self._fixups, None
        if not missing:
            return b""
        out = b""
        if b"date" in missing:
            out += b"Date: " + _date(time.time()).encode("ascii") + b"\r\n"
        if b"message-id" in missing:
            out += f"Message-ID: <{self.id}.{secrets.token_hex(6)}@{self.context.hostname}>\r\n".encode("utf-8")
        return out

    def commit(self) -> defer.Deferred:
        """
        @return: Deferred firing with the :class:`Reply` for the client (250
            when every copy is durable; never fails).
        """
        # Plain callbacks rather than a coroutine: this runs for every message.
        if self._inHeader and self._fixups and self.failure is None:
            # A message that is all header (no empty line): add at the end.
            self._inHeader = False
            self.write(self._missingHeaders())
        if self._headerCheck is not None and self.failure is None:  # all header, no empty line
            self._checkHeader()
        if self._filter is not None and self.failure is None:
            return self._filter.finish().addCallback(self._filtered).addErrback(self._filterFailed)
        return self._commitStore()

    def _filtered(self, verdict):
        """The filter's verdict: refuse, or write its header and the message, then commit."""
        run, self._filter = self._filter, None
        self.verdict = verdict
        if verdict.reply is not None:
            run.abort()
            self.failure = DeliveryError(verdict.reply.code, verdict.reply.enhanced, verdict.reply.text)
            return self._done(None)
        if getattr(verdict, "senderVerified", False) and self.envelope.sender and not self.envelope.senderVerified:
            # SPF passed for the MAIL FROM domain: its NOTIFY=SUCCESS/DELAY is
            # honoured (honouredNotify); the store and the spool are not open
            # yet, so the recipients are planned again.
            self.envelope.senderVerified = True
            self._plan()
        self._open(self._trace + verdict.header, verdict.folder, getattr(verdict, "seal", b""))
        self.size, self._inHeader = 0, False
        for piece in run.replay():
            self.write(piece)
        run.abort()
        return self._commitStore()

    def _filterFailed(self, failure):
        self._fail(failure.value, "checking", failure)
        return self._done(None)

    def _commitStore(self):
        if self.failure is None and len(self.local) == 1 and not self.remote and self._store is not None:
            # One mailbox, no one else: the quota answers for the whole
            # message (452 4.2.2 over it, 552 5.2.2 larger than it), as
            # Postfix with Dovecot's LMTP does.  With several recipients
            # the 452 was given per recipient at RCPT, and what passed
            # RCPT is delivered (docs/smtp.md "Quota").
            refusal = quotaRefusal(self.context.store, self.local[0], self.size)
            if refusal is not None:
                self._fail(refusal, "storing")
        store, self._store = self._store, None
        if self.failure is None and store is not None:
            return store.commit().addCallbacks(self._commitSpool, self._storeFailed)
        result = self._commitSpool(None)
        return result if isinstance(result, defer.Deferred) else defer.succeed(result)

    def _storeFailed(self, failure):
        self._fail(failure.value, "storing", failure)
        return self._commitSpool(None)

    def _commitSpool(self, _):
        """The store copy is durable (or there is none): commit the spool item."""
        spool, self._spool = self._spool, None
        if self.failure is None and spool is not None:
            try:
                d = spool.commit()
            except Exception as e:
                return self._spoolFailed(Failure(e))
            return d.addCallbacks(self._done, self._spoolFailed)
        return self._done(None)

    def _spoolFailed(self, failure):
        self._fail(failure.value, "spooling", failure)
        if self.local:
            log.error("message {id}: stored for {local} but not spooled; the client will retry",
                      id=self.id, local=",".join(self.local))
        return self._done(None)

    def _done(self, queueId):
        envelope = self.envelope
        metrics = getattr(self.context, "metrics", DISCARD)
        if self.failure is not None:
            metrics.messagesRejected.labels(reason=reasonClass(self.failure.code, self.failure.enhanced)).inc()
            log.info("message {id} from <{sender}> [{peer}] refused: {error} stage=refused",
                     id=self.id, sender=envelope.sender, peer=envelope.peer, error=str(self.failure),
                     stage="refused")
            return Reply(self.failure.code, self.failure.enhanced, self.failure.message)
        # One line per delivery, formatted here (the fields go along for
        # other observers): the logger's own formatting costs more.
        auth = f" auth {envelope.auth}" if envelope.auth else ""
        local = ",".join(self.local) or "nobody"
        queued = f", queued {queueId} for {len(self.remote)} recipient(s)" if queueId else ""
        if self.verdict is not None and self.verdict.summary:
            queued += f" ({self.verdict.summary})"
        # The stage (docs/operations.md "Logs"): stored when local copies
        # were made, received when it was only queued.
        stage = "stored" if self.local else "received"
        log.info("{text}", text=f"message {self.id} from <{envelope.sender}> [{envelope.peer}]{auth} "
                                f"size {self.size}: stored for {local}{queued} stage={stage}",
                 id=self.id, sender=envelope.sender, peer=envelope.peer, size=self.size, local=self.local,
                 queueId=queueId, stage=stage)
        metrics.messagesAccepted.labels(origin="submission" if envelope.auth else "mx").inc()
        metrics.messageSize.observe(self.size)
        return Reply(250, "2.0.0", f"OK id {self.id}")

    def abort(self):
        """Throw everything away (idempotent)."""
        run, self._filter = getattr(self, "_filter", None), None
        if run is not None:
            run.abort()
        store, self._store = self._store, None
        spool, self._spool = self._spool, None
        for target in (store, spool):
            if target is not None:
                try:
                    target.abort()
                except Exception:
                    log.failure("message {id}: error while aborting", id=self.id)

