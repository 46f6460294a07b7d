"""
Cross-origin access to the JMAP endpoints (the Fetch standard's CORS
protocol), ``[http] cors_origins``; off when empty.

For a listed origin (compared exactly, scheme://host[:port]), and only on
the JMAP routes (session, API, upload, download, EventSource):

* a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is
  answered 204 with ``Access-Control-Allow-Origin`` (the origin itself,
  never ``*``), ``-Allow-Methods``, ``-Allow-Headers`` (Authorization,
  Content-Type) and ``-Max-Age``;
* a real request gets ``Access-Control-Allow-Origin`` and ``Vary: Origin``.

``Access-Control-Allow-Credentials`` is never sent: a cross-origin page
authenticates with an ``Authorization`` header it sets itself (Basic or an
app password as Bearer); the browser's cookies, and so the webmail's
session, are never usable from another origin.  A preflight from an origin
not listed, or with the feature off, is not answered as one: the route
answers ``OPTIONS`` as any other method it does not take (405), and the
browser refuses the request.
"""

from __future__ import annotations

from twisted.web import server

METHODS = b"GET, POST, OPTIONS"
HEADERS = b"Authorization, Content-Type, Accept, Last-Event-ID"
MAX_AGE = b"600"  # seconds a browser may remember the preflight


def normalizeOrigin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


class CORS:
    def __init__(self, origins):
        self.origins = {normalizeOrigin(o).encode("ascii", "replace") for o in origins if o.strip()}

    def allowed(self, request) -> bytes | None:
        """The request's Origin when it is listed, else None."""
        origin = request.getHeader(b"origin")
        if not origin or not self.origins:
            return None
        origin = origin.strip()
        return origin if origin.lower() in self.origins else None

    def wrap(self, handler):
        def cors(request, rest):
            origin = self.allowed(request)
            if origin is None:
                return handler(request, rest)
            request.responseHeaders.addRawHeader(b"vary", b"Origin")
            request.responseHeaders.setRawHeaders(b"access-control-allow-origin", [origin])
            if request.method == b"OPTIONS" and request.getHeader(b"access-control-request-method"):
                request.setResponseCode(204)
                request.responseHeaders.setRawHeaders(b"access-control-allow-methods", [METHODS])
                request.responseHeaders.setRawHeaders(b"access-control-allow-headers", [HEADERS])
                request.responseHeaders.setRawHeaders(b"access-control-max-age", [MAX_AGE])
                request.finish()
                return server.NOT_DONE_YET
            return handler(request, rest)

        return cors

    def apply(self, routes: dict, paths) -> dict:
        """``routes`` with the handlers of ``paths`` wrapped (unchanged when off)."""
        if not self.origins:
            return routes
        return {path: (self.wrap(handler) if path in paths else handler) for path, handler in routes.items()}
