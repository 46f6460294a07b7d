"""
TLS-RPT reports delivered over HTTPS (RFC 8460 s3, s5.3): the gzipped
JSON report POSTed as ``application/tlsrpt+gzip`` to a ``rua=https:``
URI of the policy domain's ``_smtp._tls`` record.

The URI's host is looked up through the queue's resolver (as the MX hosts
and the MTA-STS policy hosts are), and its certificate must be valid for
that host name, checked against ``[mtasts] ca_file`` or the system's trust
store (RFC 8460 s5.3: the submitter MUST validate it, as any HTTPS client).
A redirect is not followed, the answer's body is not read, and the whole
POST is bounded by ``[mtasts] fetch_timeout`` seconds.  Only a 2xx answer
means the report was delivered.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twisted.internet import defer, protocol
from twisted.python.failure import Failure
from twisted.web import client, http_headers

from mailnet.mailauth.mtastsfetch import _OneAddress, _text

MEDIA_TYPE = b"application/tlsrpt+gzip"


class PostError(Exception):
    """The report was not accepted at an https: URI (the message says why; no secrets)."""


def parseURI(uri: str):
    """``(host, port, path)`` of an ``https:`` rua URI, or None when it is not one we can POST to."""
    try:
        parts = urlsplit(uri)
        port = parts.port or 443
    except ValueError:
        return None
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme.lower() != "https" or not host or parts.username or parts.password:
        return None
    if any(c in uri for c in " \r\n<>\"") or len(uri) > 2000:
        return None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, port, path


class _Discard(protocol.Protocol):
    def connectionMade(self):
        self.transport.stopProducing()


class ReportPoster:
    """
    ``post(uri, data)``: Deferred firing with the HTTP status (2xx) once the
    report is accepted, or failing with :class:`PostError`.

    @param addresses: ``f(name) -> Deferred of (addresses, problem)``
        (:meth:`mailnet.queue.mx.MXResolver._addresses`).
    @param trustRoot: what checks the receiver's certificate (None: the system's).
    @param timeout: seconds for the whole POST.
    """

    def __init__(self, reactor, addresses, trustRoot, timeout, userAgent=b"mailnet TLS-RPT"):
        self.reactor = reactor
        self.addresses = addresses
        self.trustRoot = trustRoot
        self.timeout = timeout
        self.userAgent = userAgent

    def post(self, uri: str, data: bytes) -> defer.Deferred:
        d = self._post(uri, data)
        expired = []

        def expire():
            expired.append(True)
            d.cancel()

        timer = self.reactor.callLater(self.timeout, expire)

        def done(result):
            if timer.active():
                timer.cancel()
            if expired and isinstance(result, Failure):
                return Failure(PostError(f"no answer from {_where(uri)} within {self.timeout} seconds"))
            return result

        return d.addBoth(done)

    @defer.inlineCallbacks
    def _post(self, uri, data):
        parsed = parseURI(uri)
        if parsed is None:
            raise PostError(f"not an https: URI: {uri[:80]}")
        host, port, path = parsed
        addresses, problem = yield self.addresses(host)
        if not addresses:
            raise PostError(f"{host} has no address ({problem.message if problem else 'none'})")
        authority = host if port == 443 else f"{host}:{port}"
        agent = client.Agent.usingEndpointFactory(
            self.reactor, _OneAddress(self.reactor, addresses[0], port, host, self.trustRoot, self.timeout))
        headers = http_headers.Headers({b"User-Agent": [self.userAgent], b"Content-Type": [MEDIA_TYPE]})
        try:
            # The plain Agent follows no redirects: a 3xx is a failure like any other non-2xx.
            response = yield agent.request(b"POST", f"https://{authority}{path}".encode("ascii", "replace"),
                                           headers, client.FileBodyProducer(_bytesIO(data)))
        except defer.CancelledError:
            raise
        except Exception as e:
            raise PostError(f"cannot POST to {_where(uri)}: {_text(e)}")
        response.deliverBody(_Discard())
        if not 200 <= response.code < 300:
            raise PostError(f"{_where(uri)} answered {response.code}")
        return response.code


def _bytesIO(data):
    import io

    return io.BytesIO(data)


def _where(uri):
    """The URI without its query (which may hold a token) for logs."""
    return uri.split("?", 1)[0][:100]
