"""
The ``metrics`` listener (issue 17): ``/metrics`` (OpenMetrics or the
Prometheus text format, by the scraper's ``Accept``) and ``/healthz``, on
twisted.web.  Off in production (``[listen] metrics = ""``); bind it to an
address only the monitoring system reaches: it has no login.

``/metrics`` is rendered on the reactor thread: ``generate_latest`` only
formats numbers already in memory (a few dozen series here, well under a
millisecond), so a thread round trip would cost more than it saves.
``/healthz`` checks the store in a thread (it touches the disk).
"""

from __future__ import annotations

import os
import uuid

from twisted.internet import defer, threads
from twisted.web import resource, server

from mailnet import serving
from mailnet.logs import Logger

log = Logger()

HEALTH_TIMEOUT = 10.0  # seconds the store may take to answer /healthz


class MetricsPage(resource.Resource):
    isLeaf = True

    def __init__(self, metrics):
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request):
        body, contentType = self.metrics.render(request.getHeader("accept"))
        request.setHeader("content-type", contentType)
        request.setHeader("cache-control", "no-store")
        return body


class HealthPage(resource.Resource):
    """200 ``ok`` when every configured listener is bound and the store answers; else 503 and why (no paths)."""

    isLeaf = True

    def __init__(self, service):
        super().__init__()
        self.service = service

    def render_GET(self, request):
        request.setHeader("content-type", "text/plain; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        d = self.service.health()

        def answer(problems):
            if request._disconnected:
                return
            if problems:
                request.setResponseCode(503)
                request.write(("\n".join(problems) + "\n").encode("utf-8"))
            else:
                request.write(b"ok\n")
            request.finish()

        d.addCallback(answer).addErrback(lambda f: log.failure("healthz failed", f))
        return server.NOT_DONE_YET


def storeProblem(store) -> str | None:
    """
    Whether the store answers (run in a thread): a store may offer
    ``healthCheck()`` (raise to say no); the maildir store is checked by
    listing its root and writing and removing a file there.
    """
    check = getattr(store, "healthCheck", None)
    if check is None:
        root = getattr(store, "root", None)
        problem = directoryProblem(root) if root is not None else None
        return f"store: {problem}" if problem else None
    try:
        check()
    except Exception as e:
        return f"store: not answering ({type(e).__name__})"
    return None


def directoryProblem(root) -> str | None:
    """None when ``root`` can be listed and a file written and removed in it; else why (no path)."""
    try:
        os.listdir(root)
        probe = os.path.join(root, f".mailnet-health-{uuid.uuid4().hex}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
    except OSError as e:
        return f"not answering ({os.strerror(e.errno) if e.errno else type(e).__name__})"
    return None


class MetricsService(serving.ProtocolService):
    name = "metrics"
    listeners = ("metrics",)
    REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    def __init__(self, context):
        super().__init__(context)
        root = resource.Resource()
        root.putChild(b"metrics", MetricsPage(context.metrics))
        root.putChild(b"healthz", HealthPage(self))
        self.site = server.Site(root, timeout=60)
        self.site.noisy = False
        self.site.displayTracebacks = False

    def factory(self, listener):
        return self.site

    def listenerProblems(self) -> list[str]:
        top = self.parent
        if top is None:
            return []
        config = self.context.config
        down = [name for name in getattr(top, "listeners", {})
                if getattr(config.listen, name, "") and name not in getattr(top, "ports", {})]
        return [f"listener {name}: not listening" for name in down]

    def health(self) -> defer.Deferred:
        """Deferred firing with the list of problems (empty: healthy)."""
        problems = self.listenerProblems()
        reactor = self.context.reactor
        d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), storeProblem, self.context.store)
        timeout = reactor.callLater(HEALTH_TIMEOUT, d.cancel)

        def done(problem):
            if timeout.active():
                timeout.cancel()
            return problems + ([problem] if problem else [])

        def failed(failure):
            if timeout.active():
                timeout.cancel()
            failure.trap(defer.CancelledError)
            return problems + [f"store: no answer in {HEALTH_TIMEOUT:g} s"]

        return d.addCallbacks(done, failed)


def makeService(context) -> MetricsService:
    return MetricsService(context)
