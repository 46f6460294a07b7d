"""
The http listener's service: JMAP (RFC 8620) on twisted.web, and later the
webmail's static files.  ``makeService(context)`` is what
:mod:`mailnet.service` calls, as for every protocol.
"""

from __future__ import annotations

import os

from twisted.internet import task

from mailnet import serving
from mailnet.http import api, auth, blobstore, eventsource, site, websocket
from mailnet.jmap import core
from mailnet.jmap.blobs import BlobLookup
from mailnet.jmap.dispatch import Limits, defaultRegistry
from mailnet.jmap.errors import PREFIX
from mailnet.jmap.mailblobs import StoreBlobSource
from mailnet.jmap.storepush import StorePushSource
from mailnet.logs import Logger
from mailnet.mailauth import mtastsserve

log = Logger()

SWEEP_INTERVAL = 3600


def limitsFrom(config) -> Limits:
    http = config.http
    return Limits(
        maxSizeUpload=min(http.max_size_upload, config.limits.http_request_size),
        maxConcurrentUpload=http.max_concurrent_upload,
        maxSizeRequest=min(http.max_size_request, config.limits.http_request_size),
        maxConcurrentRequests=http.max_concurrent_requests,
        maxCallsInRequest=http.max_calls_in_request,
        maxObjectsInGet=http.max_objects_in_get,
        maxObjectsInSet=http.max_objects_in_set,
    )


class HTTPService(serving.ProtocolService):
    """
    @ivar jmap: the :class:`~mailnet.http.api.JMAPResource`.
    @ivar push: the push source: the store's account changes
        (:class:`~mailnet.jmap.storepush.StorePushSource`) unless one is given.
    @ivar uploads: the :class:`~mailnet.http.blobstore.UploadStore`.
    @ivar blobs: the :class:`~mailnet.jmap.blobs.BlobLookup`: uploads first;
        the store's blobs plug in with ``blobs.add(source)``.
    """

    name = "http"
    listeners = ("http",)
    REFUSAL = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    def __init__(self, context, push=None):
        super().__init__(context)
        config = context.config
        clock = context.reactor
        self.limits = limitsFrom(config)
        self.registry = defaultRegistry()
        if getattr(context, "metrics", None) is not None:
            self.registry.onCall = context.metrics.jmapCall
        self.authenticator = auth.Authenticator(context.login, auth.parseProxies(config.http.trusted_proxies),
                                                config.auth.allow_plaintext)
        self.uploads = blobstore.UploadStore(os.path.join(config.server.data_dir, "blobs"), config.http.blob_expiry)
        # Uploads first, then the store's messages and their parts (mailnet/jmap/mailblobs.py).
        self.storeBlobs = StoreBlobSource()
        self.blobs = BlobLookup([self.uploads, self.storeBlobs])
        self.push = push if push is not None else StorePushSource(context.store)
        self.jmap = api.JMAPResource(self.registry, self.limits, self.authenticator, self.blobs, self.uploads, clock)
        self.jmap.accountHooks.append(lambda account: self.storeBlobs.remember(account.id, account.backend))
        self.events = eventsource.EventSource(self.jmap, self.push, clock, config.http.push_ping_minimum,
                                              config.http.push_connections_per_user)
        routes = dict(self.jmap.routes())
        routes.update(self.events.routes())
        routes.update(websocket.WebSocketEndpoint(self.jmap, self.push).routes())
        routes.update(mtastsserve.routes(config))  # our MTA-STS policy, when [mtasts] serve_mode is on
        self.site = site.Site(site.Router(routes), clock, self.bodyLimit, self.tooLargeProblem,
                              requestDeadline=config.http.request_deadline,
                              minDataRate=config.limits.min_data_rate, idleTimeout=config.http.idle_timeout)
        self.sweeper = None

    def bodyLimit(self, path: bytes) -> int:
        if path.startswith(core.API_PATH.encode()):
            return self.limits.maxSizeRequest
        if path.startswith(core.UPLOAD_PATH.encode()):
            return self.limits.maxSizeUpload
        return min(64 * 1024, self.context.config.limits.http_request_size)

    def tooLargeProblem(self, path: bytes, limit: int) -> dict:
        body = {"type": "about:blank", "status": 413, "detail": f"The body is larger than {limit} bytes."}
        if path.startswith(core.API_PATH.encode()):
            body.update(type=PREFIX + "limit", limit="maxSizeRequest")
        elif path.startswith(core.UPLOAD_PATH.encode()):
            body.update(type=PREFIX + "limit", limit="maxSizeUpload")
        return body

    def factory(self, listener):
        return self.site

    def startService(self):
        super().startService()
        self.sweeper = task.LoopingCall(self._sweep)
        self.sweeper.clock = self.context.reactor
        self.sweeper.start(SWEEP_INTERVAL, now=True)

    def _sweep(self):
        return self.uploads.sweep().addErrback(lambda failure: log.failure("jmap: sweeping uploads failed", failure))

    def stopService(self):
        if self.sweeper is not None and self.sweeper.running:
            self.sweeper.stop()
        return super().stopService()


def makeService(context) -> HTTPService:
    return HTTPService(context)
