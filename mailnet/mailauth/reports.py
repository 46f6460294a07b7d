"""
What the daily aggregate reports we send share (TLS-RPT, RFC 8460:
:mod:`.tlsrpt`; DMARC, RFC 7489 s7.2: :mod:`.dmarcrpt`): UTC days, a loop
that looks for finished days at start and every hour, and the queueing of
one report message (DKIM-signed with our hostname's keys, null reverse
path so that a bounce can never loop back to us).

Each kind subclasses :class:`DailyReporter` and writes :meth:`~DailyReporter.sendDue`.
"""

from __future__ import annotations

import datetime

from twisted.internet import defer, task

from mailnet.logs import Logger

log = Logger()

CHECK_SECONDS = 3600  # how often finished days are looked for
DAY = 86400


def dayOf(seconds) -> str:
    """The UTC day (``YYYY-MM-DD``) of a POSIX time."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d")


def dayStart(day: str) -> int:
    """The POSIX time of 00:00:00 UTC of ``day``."""
    return int(datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp())


class DailyReporter:
    """
    Runs :meth:`sendDue` at :meth:`start` and every ``interval`` seconds
    (reactor thread).  :meth:`stop` waits for a run in progress, then
    :meth:`stopped`.

    @param spool: the queue's :class:`~mailnet.queue.spool.Spool`.
    @param signer: an :class:`~mailnet.mailauth.ownmail.OwnMailSigner` or None.
    """

    logName = "reports"  # the prefix of log lines

    def __init__(self, reactor, config, spool, signer=None, interval=CHECK_SECONDS):
        self.reactor = reactor
        self.config = config
        self.spool = spool
        self.signer = signer
        self.interval = interval
        self.hostname = config.server.hostname.lower().rstrip(".")
        self._loop = None
        self._running = None

    def start(self):
        self._loop = task.LoopingCall(self.run)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("{name}: reporting failed", f, name=self.logName))

    @defer.inlineCallbacks
    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._running is not None and not self._running.called:
            yield self._running
        self.stopped()

    def stopped(self):
        """After :meth:`stop`: write what is held in memory (a subclass's)."""

    def run(self, work=None):
        """
        One run of ``work`` (default :meth:`sendDue`) now: the loop's, or an
        operator's; a run already going is waited for first.
        """
        previous = self._running
        if previous is not None and not previous.called:
            d = defer.Deferred()
            previous.addBoth(lambda _: self.run(work).chainDeferred(d))
            return d
        d = self._running = defer.maybeDeferred(work or self.sendDue)
        d.addErrback(lambda f: log.failure("{name}: sending reports failed", f, name=self.logName))
        return d

    def sendDue(self):
        """Send the reports that are due; returns a Deferred (or None)."""
        raise NotImplementedError

    @defer.inlineCallbacks
    def spoolMessage(self, data: bytes, to: list[str]):
        """Queue one report message (CRLF) to ``to`` with a null reverse path; Deferred of the queue id."""
        if self.signer is not None:
            keys = self.signer.keysFor(self.hostname)
            data = self.signer.sign(data, keys)  # one small message per domain and day: on the reactor
        writer = self.spool.newMessage("", [{"address": a} for a in to], body="7BIT", arrival=self.reactor.seconds())
        try:
            writer.write(data)
            queueId = yield writer.commit()
        except Exception:
            writer.abort()
            raise
        return queueId
