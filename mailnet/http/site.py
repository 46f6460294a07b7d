"""
The twisted.web plumbing of the http listener: the request class (security
headers on every answer, bodies over their limit refused from the
Content-Length before they are read, errors without paths or tracebacks),
the channel (a deadline for each request's head and body that trickling
bytes do not push back, an idle timeout between requests), the site.

What is served is decided by :class:`Router`: path prefix -> handler,
anything else a 404 that does not repeat the path.
"""

from __future__ import annotations

import json
import urllib.parse

from twisted.web import http, server
from twisted.web.resource import Resource

from mailnet.deadline import Deadlines
from mailnet.logs import Logger

log = Logger()

# Every answer: no caching of API answers, no MIME sniffing, a strict CSP
# (nothing loads, nothing frames us), no referrer leaves.
SECURITY_HEADERS = {
    b"cache-control": b"no-store",
    b"x-content-type-options": b"nosniff",
    b"content-security-policy": b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}


def writeJSON(request, status, value, contentType=b"application/json"):
    """Answer with a JSON body (and finish the request)."""
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"content-type", contentType)
    request.setHeader(b"content-length", b"%d" % len(body))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def problem(request, status, type, detail, **extra):
    """RFC 7807 problem details (RFC 8620 s3.6.1 uses them for request-level errors)."""
    writeJSON(request, status, dict({"type": type, "status": status, "detail": detail}, **extra),
              b"application/problem+json")


def notFound(request):
    """404 that repeats nothing of the path."""
    problem(request, 404, "about:blank", "Not found.")


def pathSegments(request, rest, count, encoding="utf-8"):
    """
    The ``count`` percent-decoded segments of ``rest`` (the path after a
    route), or None with a 404 sent when there are not that many or one
    does not decode.
    """
    parts = rest.split(b"/")
    if len(parts) == count:
        try:
            return tuple(urllib.parse.unquote_to_bytes(p).decode(encoding) for p in parts)
        except UnicodeDecodeError:
            pass
    notFound(request)
    return None


def allowMethods(request, *allowed):
    """False (and a 405 with Allow sent) unless the request's method is one of ``allowed``."""
    if request.method not in allowed:
        request.setHeader(b"allow", b", ".join(allowed))
        problem(request, 405, "about:blank", "Method not allowed.")
        return False
    return True


class MailnetRequest(server.Request):
    """A request that refuses an oversized body unread and adds the security headers."""

    refused = False

    def gotLength(self, length):
        limit = self.channel.site.bodyLimit(getattr(self.channel, "_path", b""))
        if length is not None and length > limit:
            self._refuseTooLarge(limit)
            length = 0
        self._received = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self.refused:
            return
        self._received += len(data)
        limit = self.channel.site.bodyLimit(getattr(self.channel, "_path", b""))
        if self._received > limit:  # chunked bodies have no Content-Length
            self._refuseTooLarge(limit)
            return
        super().handleContentChunk(data)

    def _refuseTooLarge(self, limit):
        """413 at once and close: the body is never read (RFC 9110 s15.5.14)."""
        self.refused = True
        self.requestHeaders.removeHeader(b"expect")  # no 100 Continue for it
        path = getattr(self.channel, "_path", b"")
        body = json.dumps(self.channel.site.tooLargeProblem(path, limit)).encode()
        head = [b"HTTP/1.1 413 Content Too Large", b"Content-Type: application/problem+json",
                b"Content-Length: %d" % len(body), b"Connection: close"]
        head += [name + b": " + value for name, value in SECURITY_HEADERS.items()]
        self.channel.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.channel.transport.loseConnection()
        log.info("http: {peer}: a request body over {limit} bytes refused", peer=self._peer(), limit=limit)

    def _peer(self):
        return getattr(self.getClientAddress(), "host", "?")

    def process(self):
        if self.refused:
            return
        super().process()

    def render(self, resource):
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        self.setHeader(b"server", b"mailnet")
        super().render(resource)

    def processingFailed(self, reason):
        # Logged for the operator; the client sees no traceback, no path.
        log.failure("http: {peer}: request failed", reason, peer=self._peer())
        if self.finished or self._disconnected:
            return None
        if self.startedWriting:
            self.channel.loseConnection()
            return None
        problem(self, 500, "about:blank", "Internal server error.")
        return None


class MailnetChannel(http.HTTPChannel):
    """HTTPChannel with a deadline from a request's first byte to its last."""

    def connectionMade(self):
        super().connectionMade()
        self.deadlines = Deadlines(self.site.clock, self._deadlinePassed)

    def dataReceived(self, data):
        if not self._handlingRequest and not self.deadlines.running("request"):
            self.deadlines.start("request", self.site.requestDeadline, self.site.minDataRate)
        self.deadlines.received(len(data))
        super().dataReceived(data)

    def allContentReceived(self):
        self.deadlines.stop("request")
        super().allContentReceived()

    def _deadlinePassed(self, name):
        if self._handlingRequest:
            return False  # our turn, not the client's
        log.info("http: {peer}: request not received in time", peer=getattr(self.transport.getPeer(), "host", "?"))
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.transport.loseConnection()
        return True

    def connectionLost(self, reason):
        self.deadlines.cancel()
        super().connectionLost(reason)


class Router(Resource):
    """
    One resource for the whole site: ``routes`` maps a path prefix (bytes)
    to ``handler(request, rest)`` where ``rest`` is the path after the
    prefix; the handler returns ``server.NOT_DONE_YET`` or bytes.
    """

    isLeaf = True

    def __init__(self, routes):
        super().__init__()
        self.routes = sorted(routes.items(), key=lambda item: -len(item[0]))

    def render(self, request):
        path = request.path
        for prefix, handler in self.routes:
            if path == prefix or (prefix.endswith(b"/") and path.startswith(prefix)):
                return handler(request, path[len(prefix):])
        # A 404 that names no path (it is the client's own; nothing of ours).
        notFound(request)
        return server.NOT_DONE_YET


class Site(server.Site):
    """
    @ivar bodyLimit: ``f(path) -> bytes`` a request body may have.
    @ivar tooLargeProblem: ``f(path, limit) -> dict``, the 413 body.
    """

    requestFactory = MailnetRequest
    protocol = MailnetChannel
    noisy = False
    displayTracebacks = False

    def __init__(self, resource, clock, bodyLimit, tooLargeProblem, requestDeadline=60, minDataRate=500,
                 idleTimeout=120):
        super().__init__(resource, timeout=idleTimeout, reactor=clock)
        self.clock = clock
        self.bodyLimit = bodyLimit
        self.tooLargeProblem = tooLargeProblem
        self.requestDeadline = requestDeadline
        self.minDataRate = minDataRate

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        channel.site = self
        return channel

    def log(self, request):
        """
        One debug line per request instead of twisted.web's access log: the
        route only (``/jmap/download/...``), never the rest of the path or the
        query (blob ids, file names, push arguments), never a header.
        """
        parts = request.path.split(b"/")
        route = b"/".join(parts[:3]) + (b"/..." if len(parts) > 3 else b"")
        log.debug("http: {peer} {method} {route} {status} {size}",
                  peer=getattr(request.getClientAddress(), "host", "?"),
                  method=request.method.decode("latin-1")[:10], route=route.decode("latin-1")[:40],
                  status=request.code, size=request.sentLength)
