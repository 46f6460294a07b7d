"""
The message filter: what SMTP's :class:`~mailnet.smtp.delivery.MessageDelivery`
calls for each message (``context.messageFilter``, made by :func:`makeFilter`).

``messageFilter(envelope)`` returns None (nothing to do: the message streams
to the store and the spool as before) or a *run* that takes the message's
pieces (``write``), then ``finish()`` -> Deferred firing with a
:class:`~mailnet.mailauth.checks.Verdict` whose ``header`` goes before the
message, and ``replay()``, the message to write after it; or ``abort()``.

* Mail from an authenticated user (submission, or our users' local
  deliveries): signed with the DKIM keys of its From domain (else of its
  MAIL FROM domain), once, before it enters the store or the spool, so the
  queue's retries send the same signed bytes.
* Mail without login (the MX), when ``[mailauth] inbound``: SPF, DKIM,
  DMARC and the local-domain rule (:mod:`.checks`); any Authentication-Results
  field claiming our authserv-id is removed first (RFC 8601 s5).  With
  ``inbound`` off, the local-domain rule alone on the From field (it needs
  no DNS): :meth:`MessageFilter.headerCheck`, which SMTP's delivery runs
  on the header section while the message streams to the store.
* Mail without login that an alias sends on to another domain: its spool
  copy ARC-sealed (:mod:`.arcseal`) after the checks.

The body is held in memory up to :data:`MEMORY`, beyond that in a
temporary file under data_dir/tmp.  dkimpy needs the message whole: up to
``[mailauth] inline_size`` it signs or verifies on the reactor thread (less
CPU than a thread round trip, and Python threads would not run it in
parallel anyway), a larger message is read whole in a worker thread, at
most ``[mailauth] threads`` at a time.
"""

from __future__ import annotations

import os
import tempfile

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from mailnet.logs import Logger
from mailnet.mailauth import arcseal, dkimsign, headers, keys as keysmod
from mailnet.mailauth.checks import Checker, Verdict
from mailnet.mailauth.dnsquery import prefetchTXT

log = Logger()

MEMORY = 512 * 1024  # bytes of a message body held in memory before it goes to a file
CHUNK = 64 * 1024


class _Buffer:
    """A message as it arrives: the header section and, up to :data:`MEMORY`,
    the body in memory (a list of the pieces); a larger body in a file."""

    def __init__(self, tmpDir, limit):
        self.tmpDir = tmpDir
        self.limit = limit
        self.head = b""
        self.inHeader = True
        self.pieces = []
        self.file = None
        self.size = 0
        self.held = 0

    def write(self, data: bytes):
        self.size += len(data)
        if self.inHeader:
            self.head += data
            if self.head[:2] == b"\r\n":
                end = 0
            else:
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    return
                end += 2
            self.inHeader = False
            data, self.head = self.head[end:], self.head[:end]
        if self.file is not None:
            self.file.write(data)
            return
        self.pieces.append(data)
        self.held += len(data)
        if self.held > MEMORY:
            self.file = tempfile.TemporaryFile(dir=self.tmpDir)
            self.file.write(b"".join(self.pieces))
            self.pieces = []

    @property
    def tooLarge(self):
        return self.size > self.limit

    def read(self) -> bytes:
        """The whole message (after the last write)."""
        if self.file is None:
            return self.head + b"".join(self.pieces)
        self.file.seek(0)
        return self.head + self.file.read()

    def replayBody(self):
        if self.file is None:
            yield from self.pieces
            return
        self.file.seek(0)
        while True:
            chunk = self.file.read(CHUNK)
            if not chunk:
                return
            yield chunk

    def close(self):
        self.pieces = []
        if self.file is not None:
            self.file.close()
            self.file = None


class _Run:
    def __init__(self, owner, envelope):
        self.owner = owner
        self.envelope = envelope
        self.buffer = _Buffer(owner.tmpDir, owner.settings.max_size)
        self.write = self.buffer.write
        self.message = None  # the whole message once read in the thread
        self.head = None  # the header section to replay (None: as received)

    def replay(self):
        """The message to write after the verdict's header, in pieces."""
        if self.message is not None:
            if self.head is None:
                yield self.message
            else:
                yield self.head
                yield self.message[len(self.buffer.head):]
            return
        yield self.buffer.head if self.head is None else self.head
        yield from self.buffer.replayBody()

    def _read(self):
        self.message = self.buffer.read()
        return self.message

    def abort(self):
        self.message = None
        self.buffer.close()


class SignRun(_Run):
    """Mail of an authenticated user: DKIM-sign it."""

    def finish(self) -> defer.Deferred:
        buffer = self.buffer
        if buffer.inHeader:  # all header, no empty line: the header is all there is
            buffer.inHeader = False
        domains = list(headers.fromDomains(buffer.head))
        if self.envelope.sender:
            domains.append(self.envelope.sender.rpartition("@")[2].lower())
        keys = self.owner.keys()
        chosen = next((keys[d] for d in domains if d in keys), None)
        if not chosen:
            return defer.succeed(Verdict(summary="not signed: no DKIM key for the domain"))
        if buffer.tooLarge:
            log.warn("message from <{sender}> not DKIM-signed: larger than [mailauth] max_size",
                     sender=self.envelope.sender)
            return defer.succeed(Verdict(summary="not signed: too large"))

        def work():
            return dkimsign.sign(self._read(), chosen)

        if buffer.size <= self.owner.settings.inline_size:
            d = defer.maybeDeferred(work)
        else:
            d = threads.deferToThreadPool(self.owner.reactor, self.owner.pool, work)

        def signed(fields):
            return Verdict(header=fields, summary=f"DKIM-signed d={chosen[0].domain}")

        def failed(failure):
            log.failure("DKIM signing failed; the message goes unsigned", failure)
            return Verdict(summary="not signed: signing failed")
        return d.addCallbacks(signed, failed)


class CheckRun(_Run):
    """Mail received without login: SPF, DKIM, DMARC."""

    def finish(self) -> defer.Deferred:
        buffer = self.buffer
        buffer.inHeader = False
        head, removed = headers.withoutOurResults(buffer.head, self.owner.checker.authservId)
        if removed:
            self.head = head
        d = self.owner.checker.check(self.envelope, buffer.head, self._read, buffer.tooLarge,
                                     inline=buffer.size <= self.owner.settings.inline_size)
        if any(r.remote for r in self.envelope.recipients):
            d.addCallback(self._seal)
        return d

    def _seal(self, verdict):
        """
        A copy goes on to another domain (an alias): ARC-seal it (RFC 8617),
        once, before it is spooled.  The previous sets are verified first;
        their result goes into our Authentication-Results (``arc=``) and is
        the seal's ``cv=``.  Only the spool's copy carries the set
        (``verdict.seal``).
        """
        owner = self.owner
        if verdict.reply is not None or not verdict.header or self.buffer.tooLarge:
            return verdict
        key = owner.sealKey()
        if key is None:
            return verdict
        head = self.buffer.head if self.head is None else self.head
        names = arcseal.keyNames(head) if arcseal.hasChain(head) else []
        checker = owner.checker
        d = defer.succeed({})
        if names:  # no key in time: the chain fails (dkimpy sees no key)
            d = checker._limited(prefetchTXT(checker.resolver, names, checker.dnsTimeout), dict)
        inline = self.buffer.size <= owner.settings.inline_size

        def work(answers):
            message = self._read()
            if head is not self.buffer.head:
                message = head + message[len(self.buffer.head):]
            cv = arcseal.chainResult(message, answers)
            header = arcseal.withArcResult(verdict.header, cv)
            return header, arcseal.seal(header + message, key, checker.authservId, int(owner.reactor.seconds()))

        def run(answers):
            if inline:
                return work(answers)
            return threads.deferToThreadPool(owner.reactor, owner.pool, work, answers)

        def sealed(result):
            verdict.header, verdict.seal = result
            verdict.summary += f" ARC-sealed d={key.domain}"
            return verdict

        def failed(failure):
            log.failure("ARC sealing failed; the forwarded copy goes unsealed", failure)
            return verdict
        return d.addCallback(run).addCallbacks(sealed, failed)


class MessageFilter:
    """``context.messageFilter``: one per server."""

    def __init__(self, config, reactor, resolver):
        self.config = config
        self.settings = config.mailauth
        self.reactor = reactor
        self.dataDir = config.server.data_dir
        self.tmpDir = os.path.join(self.dataDir, "tmp")
        self.pool = ThreadPool(minthreads=0, maxthreads=self.settings.threads, name="mailauth")
        self._started = False
        self.checker = Checker(config, reactor, resolver, self.pool)
        self.ring = keysmod.KeyRing(self.dataDir, reactor, log)
        self._sealWarned = False

    def _start(self):
        if not self._started:
            self._started = True
            os.makedirs(self.tmpDir, mode=0o700, exist_ok=True)
            self.pool.start()
            # Threads waiting for DNS stop waiting first, so that joining them cannot hang.
            self.reactor.addSystemEventTrigger("before", "shutdown", self.checker.stopping.set)
            self.reactor.addSystemEventTrigger("during", "shutdown", self.pool.stop)

    def sealKey(self):
        """The key that ARC-seals forwarded mail (:func:`.arcseal.sealKey`), or None (logged once)."""
        key = arcseal.sealKey(self.ring, self.config.server.hostname, self.config.domains.local)
        if key is None and not self._sealWarned:
            self._sealWarned = True
            log.warn("forwarded mail is not ARC-sealed: no RSA DKIM key for {host} or a local domain "
                     "(mailnet dkim keygen)", host=self.config.server.hostname)
        return key

    def keys(self) -> dict:
        """The DKIM keys by domain (looked for again every few seconds: :class:`~.keys.KeyRing`)."""
        return self.ring.get()

    def __call__(self, envelope):
        if envelope.auth:
            if self.settings.sign and self.keys():
                self._start()
                return SignRun(self, envelope)
            return None
        if self.settings.inbound:
            self._start()
            return CheckRun(self, envelope)
        return None

    def headerCheck(self, envelope):
        """
        For mail that :meth:`__call__` left alone: a check of its header
        section alone, or None.  Without login and with ``inbound`` off, the
        local-domain rule on the From field (it needs no DNS): SMTP's
        delivery streams the message as usual, calls ``check(header)`` when
        the header section is complete, and aborts the message on a refusal
        (the reply at the end of DATA), holding nothing back.
        """
        if envelope.auth or self.settings.inbound or self.settings.local_spoofing != "reject":
            return None
        return lambda header: self.checker.localSpoof(envelope, header)


def makeFilter(config, reactor):
    """The filter for a server (None when mail authentication has nothing to do)."""
    if not (config.mailauth.sign or config.mailauth.inbound or config.mailauth.local_spoofing == "reject"):
        return None
    from mailnet.mailauth.dnsquery import CachingResolver
    from mailnet.queue.mx import LazyResolver, makeResolver

    resolver = CachingResolver(LazyResolver(lambda: makeResolver(config, reactor)), reactor)
    if config.mailauth.inbound:
        # the Public Suffix List takes about a second to load: not in the first message's time
        from mailnet.mailauth.dmarc import orgDomain

        if hasattr(reactor, "callWhenRunning"):  # not on a test clock
            reactor.callWhenRunning(reactor.callInThread, orgDomain, "example.com")
    messageFilter = MessageFilter(config, reactor, resolver)
    if config.mailauth.inbound:
        from mailnet.mailauth import dmarcrpt

        # RFC 7489 s7.2: the rows of the DMARC reports (the queue's reporter sends them)
        recorder = messageFilter.checker.recorder = dmarcrpt.makeRows(reactor, config)
        if recorder is not None and hasattr(reactor, "addSystemEventTrigger"):
            reactor.addSystemEventTrigger("before", "shutdown", recorder.close)  # the rows held in memory
    return messageFilter
