"""
The queue as a Twisted service: takes the spool lock, runs the
:class:`~mailnet.queue.scheduler.QueueRunner` and serves the control
socket (see :mod:`mailnet.queue.control`).

Plugged into the server by :data:`mailnet.service.EXTRA_SERVICES`.
"""

from __future__ import annotations

import contextlib
import os

from twisted.application import service
from twisted.internet import defer

from mailnet.logs import Logger
from mailnet.queue import control, mx
from mailnet.queue.relay import SMTPConnector
from mailnet.queue.scheduler import QueueRunner
from mailnet.queue.spool import SpoolLock

log = Logger()

LOCK_RETRY = 0.2


class QueueService(service.Service):
    """
    @ivar runner: the :class:`QueueRunner` once the lock is ours.
    @ivar started: Deferred firing when the runner has started (tests).
    """

    name = "queue"

    def __init__(self, context, resolver=None, connector=None):
        self.context = context
        self.resolver = resolver
        self.connector = connector
        self.runner = None
        self.lock = SpoolLock(context.spool.lockPath)
        self.started = defer.Deferred()
        self._retry = None
        self._port = None
        self._waitLogged = False
        self.reporter = None
        self.dmarcReporter = None

    def startService(self):
        super().startService()
        self._tryStart()

    def _tryStart(self):
        self._retry = None
        if not self.running:
            return
        if not self.lock.acquire(blocking=False):
            if not self._waitLogged:
                log.warn("queue: the spool lock is held by pid {pid} (a `mailnet queue` command, or another "
                         "server on this data_dir); waiting for it", pid=self.lock.holder() or "?")
                self._waitLogged = True
            self._retry = self.context.reactor.callLater(LOCK_RETRY, self._tryStart)
            return
        context = self.context
        config = context.config
        connector = self.connector
        if connector is None:
            connector = SMTPConnector(context.reactor, config, mx.MXResolver(
                self.resolver or mx.LazyResolver(lambda: mx.makeResolver(config, context.reactor))))
            from mailnet.mailauth import mtastsfetch  # MTA-STS and TLS-RPT (issue 16)

            connector.sts = mtastsfetch.makeOutbound(context.reactor, config, connector.resolver)
            self.reporter = mtastsfetch.makeReporter(context.reactor, config, connector.sts, connector.resolver.resolver,
                                                     context.spool)
            from mailnet.mailauth import dmarcrpt  # RFC 7489 s7.2: the MX's checks' rows, reported daily

            checker = getattr(getattr(context, "messageFilter", None), "checker", None)
            self.dmarcReporter = dmarcrpt.makeReporter(context.reactor, config, context.spool,
                                                       connector.resolver.resolver,
                                                       getattr(checker, "recorder", None))
        self.runner = QueueRunner(context.spool, config, context.reactor, connector,
                                  directory=context.directory, store=context.store, hostname=context.hostname,
                                  metrics=getattr(context, "metrics", None), srs=getattr(context, "srs", None))
        if getattr(context, "metrics", None) is not None:
            context.metrics.watchQueue(self.runner)
        self.runner.start()
        if self.reporter is not None:
            self.reporter.start()
        if self.dmarcReporter is not None:
            self.dmarcReporter.start()
        self._listen()
        self.started.callback(self.runner)

    def _listen(self):
        config = self.context.config
        path = control.socketPath(config)
        os.makedirs(config.runDir, exist_ok=True)
        if len(path.encode()) >= 108:
            log.error("queue: control socket path {path} is too long for a UNIX socket; `mailnet queue` "
                      "will not reach this server", path=path)
            return
        # We hold the spool lock, so a socket file left here is stale.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        factory = control.ControlFactory(self.runner, self._extraCommands())
        self._port = self.context.reactor.listenUNIX(path, factory, mode=0o600)

    def _extraCommands(self):
        """Control socket commands beside the queue's: ``dmarc-report`` (``mailnet dmarc report --now``)."""
        extra = {}
        if self.dmarcReporter is not None:
            extra["dmarc-report"] = lambda: self.dmarcReporter.reportNow().addCallback(lambda n: {"reports": n})
        return extra

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._port is not None:
            # Not waited for: the port closes on the next reactor turn, and
            # an embedding application may stop us without a running reactor.
            port, self._port = self._port, None
            port.stopListening()
        if self.reporter is not None:
            yield self.reporter.stop()
        if self.dmarcReporter is not None:
            yield self.dmarcReporter.stop()
        if self.runner is not None:
            yield self.runner.stop()
        self.lock.release()


def makeService(context):
    """The plug-in hook of :data:`mailnet.service.EXTRA_SERVICES`."""
    return QueueService(context)
