"""
The HTTP client of JMAP push (RFC 8620 s7.2): ``post(url, headers, body)``
for :class:`~mailnet.jmap.pushsender.PushSender`, on twisted.web's Agent.

* https with the certificate checked (the platform's trust store, or only
  ``[jmap] push_ca_file`` when set); ``http:`` only for URLs under a prefix
  of ``[jmap] push_allowed_prefixes``, checked again here;
* no redirects followed, no connection kept, at most ``timeout`` seconds
  for the whole exchange; the answer's body is read up to 64 KB and
  dropped; the status is the result.
"""

from __future__ import annotations

import io

from twisted.internet import defer, protocol, ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers

from mailnet.jmap.pushsubscription import checkURL

MAX_ANSWER = 64 * 1024


class _Drain(protocol.Protocol):
    def __init__(self, done):
        self.done = done
        self.seen = 0

    def dataReceived(self, data):
        self.seen += len(data)
        if self.seen > MAX_ANSWER:
            self.transport.stopProducing()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(None)


class PushClient:
    """
    @param reactor: the reactor.
    @param timeout: seconds for one POST (connect, send, answer).
    @param caFile: a PEM CA certificate to trust instead of the platform's ('' = the platform's).
    @param allowedPrefixes: URL prefixes allowed over plain http.
    """

    def __init__(self, reactor, timeout=30.0, caFile="", allowedPrefixes=()):
        self.reactor = reactor
        self.timeout = timeout
        self.allowedPrefixes = tuple(allowedPrefixes)
        trustRoot = None
        if caFile:
            with open(caFile, "rb") as f:
                trustRoot = ssl.Certificate.loadPEM(f.read())
        policy = BrowserLikePolicyForHTTPS(trustRoot=trustRoot)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, contextFactory=policy, connectTimeout=timeout, pool=pool)

    def post(self, url, headers, body):
        try:
            checkURL(url, self.allowedPrefixes)
        except ValueError as e:
            return defer.fail(e)
        h = Headers({k.encode("ascii"): [v.encode("ascii")] for k, v in headers.items()})
        h.setRawHeaders(b"User-Agent", [b"mailnet"])
        d = self.agent.request(b"POST", url.encode("ascii"), h, FileBodyProducer(io.BytesIO(body)))

        def read(response):
            done = defer.Deferred()
            response.deliverBody(_Drain(done))
            return done.addCallback(lambda _: response.code)

        d.addCallback(read)
        d.addTimeout(self.timeout, self.reactor)
        return d
