"""
The http listener's service: JMAP (RFC 8620) on twisted.web, and the
webmail (mailnet/http/webmail.py: its files, cookie logins, cleaned HTML).  ``makeService(context)`` is what
:mod:`mailnet.service` calls, as for every protocol.
"""

from __future__ import annotations

import os

from twisted.internet import defer, task

from mailnet import serving
from mailnet.auth import IUserDirectory
from mailnet.http import (api, auth, blobstore, cors, eventsource, pushclient, session, site, userdata, webmail,
                          websocket)
from mailnet.jmap import core
from mailnet.jmap.blobs import BlobLookup
from mailnet.jmap.dispatch import Limits, defaultRegistry
from mailnet.jmap.errors import PREFIX
from mailnet.jmap.identity import SUBMISSION, SendRules, submissionCapability
from mailnet.jmap.mailblobs import StoreBlobSource
from mailnet.jmap.pushsender import PushSender
from mailnet.jmap.storepush import StorePushSource
from mailnet.jmap.submission import Outbox, Outcome
from mailnet.logs import Logger
from mailnet.mailauth import mtastsserve
from mailnet.queue import submit

log = Logger()

SWEEP_INTERVAL = 3600
# The JMAP documents every node must see alike, with several nodes (docs/scaling.md).
SHARED_DOCUMENTS = ("identities", "pushsubscriptions", "webmail")


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
    @ivar uploads: the context's ``uploads`` (the PostgreSQL store's, shared
        by the nodes) or a :class:`~mailnet.http.blobstore.UploadStore`.
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
        # The webmail's cookie sessions ([webmail]); None when the webmail is off.  Several
        # nodes: the database's (mailnet/service.py sharedSessions), else this node's memory.
        self.sessions = None
        if config.webmail.enabled:
            self.sessions = getattr(context, "webSessions", None)
            if self.sessions is None:
                self.sessions = session.SessionStore(clock, config.webmail.session_idle, config.webmail.session_max)
        users = getattr(context, "users", None)
        self.authenticator = auth.Authenticator(context.login, auth.parseProxies(config.http.trusted_proxies),
                                                config.auth.allow_plaintext, self.sessions,
                                                users.exists if IUserDirectory.providedBy(users) else None,
                                                getattr(users, "tokens", None))
        # The wiring's shared uploads (PostgreSQL: every node finds them), else this node's files.
        self.uploads = getattr(context, "uploads", None) or blobstore.UploadStore(
            os.path.join(config.server.data_dir, "blobs"), config.http.blob_expiry)
        # Uploads first, then the store's messages and their parts (mailnet/jmap/mailblobs.py).
        self.storeBlobs = StoreBlobSource()
        self.blobs = BlobLookup([self.uploads, self.storeBlobs])
        self.push = push if push is not None else StorePushSource(context.store)
        self.jmap = api.JMAPResource(self.registry, self.limits, self.authenticator, self.blobs, self.uploads, clock)
        self.jmap.accountHooks.append(lambda account: self.storeBlobs.remember(account.id, account.backend))
        self.jmap.services.update(hostname=config.server.hostname, messageSize=config.limits.message_size)
        self._services(context)
        # RFC 8621 s8: VacationResponse reads and writes the users' vacation settings (mailnet/vacation.py).
        self.jmap.services["vacation"] = getattr(context, "vacation", None)
        self.events = eventsource.EventSource(self.jmap, self.push, clock, config.http.push_ping_minimum,
                                              config.http.push_connections_per_user)
        routes = dict(self.jmap.routes())
        routes.update(self.events.routes())
        # [http] cors_origins: other origins' pages may call these with an Authorization header.
        routes = cors.CORS(config.http.cors_origins).apply(routes, set(routes))
        routes.update(websocket.WebSocketEndpoint(self.jmap, self.push).routes())
        if self.sessions is not None:
            self.webmail = webmail.Webmail(self.jmap, self.sessions, config.webmail.inline_image_max,
                                           userData=getattr(self, "userData", None),
                                           composeHTMLMax=config.webmail.compose_html_max)
            routes.update(self.webmail.routes())
        routes.update(mtastsserve.routes(config))  # our MTA-STS policy, when [mtasts] serve_mode is on
        self.site = site.Site(site.Router(routes), clock, self.bodyLimit, self.tooLargeProblem,
                              requestDeadline=config.http.request_deadline,
                              minDataRate=config.limits.min_data_rate, idleTimeout=config.http.idle_timeout)
        self.sweeper = None

    def _services(self, context):
        """Identity and EmailSubmission: the submission rules, user data, the outbox (SMTP's path)."""
        self.outbox = None
        directory = getattr(context, "directory", None)
        if directory is None or getattr(context, "spool", None) is None:
            return  # an embedding without the mail side: Identity and EmailSubmission are forbidden
        config = context.config
        self.userData = userdata.JSONUserData(os.path.join(config.server.data_dir, "jmap"))
        shared = getattr(context, "sharedUserData", None)  # several nodes: the database's (mailnet/service.py)
        if shared is not None:
            # Identities, the webmail's settings and PushSubscriptions shared (docs/scaling.md).
            self.userData = userdata.RoutedUserData(shared, self.userData, SHARED_DOCUMENTS)
        self.outbox = Outbox(self._send, context.reactor, hold=config.jmap.submission_hold,
                             maxRecipients=config.limits.smtp_recipients, messageSize=config.limits.message_size,
                             resolve=lambda a: submit.resolveRecipient(directory, a) if "@" in a else None,
                             runner=self._run, maxDelayedSend=config.jmap.max_delayed_send,
                             journal=userdata.OutboxJournal(os.path.join(config.server.data_dir, "jmap", "outbox")))
        self.jmap.services.update(sendRules=SendRules(directory), userData=self.userData, outbox=self.outbox)
        clock, maxDelay = context.reactor, config.jmap.max_delayed_send
        self.registry.accountCapabilities[SUBMISSION] = lambda username: submissionCapability(maxDelay,
                                                                                              clock.seconds())
        # RFC 8620 s7.2 PushSubscription: the per-user documents, POSTed by the push client.
        jmap = config.jmap
        client = pushclient.PushClient(context.reactor, jmap.push_timeout, jmap.push_ca_file,
                                       jmap.push_allowed_prefixes)
        self.pushSender = PushSender(
            client.post, context.reactor, self.push, self.userData, self._runPush, ttl=jmap.push_ttl,
            coalesce=jmap.push_coalesce, attempts=jmap.push_attempts, backoff=jmap.push_retry_initial,
            maxBackoff=jmap.push_retry_max, perUser=jmap.push_subscriptions_per_user,
            maxExpires=jmap.push_expires_max, allowedPrefixes=jmap.push_allowed_prefixes)
        self.jmap.services["pushSender"] = self.pushSender
        watch = getattr(shared, "watch", None)
        if watch is not None:
            # Another node made, verified, changed or dropped a subscription: this node reads the user's again.
            watch("pushsubscriptions", lambda username: self.pushSender.resync() if username is None
                  else self.pushSender.reload(username))

    def _send(self, username, mailFrom, rcptTo, data, peer="127.0.0.1"):
        d = submit.submit(self.context, username, mailFrom, rcptTo, data, peer=peer)
        return d.addCallback(lambda s: Outcome(s.code, f"{s.enhanced} {s.text}".strip(), s.local))

    def _runPush(self, coroutine):
        d = defer.ensureDeferred(coroutine)
        d.addErrback(lambda failure: log.failure("jmap push: a delivery failed", failure))

    def _run(self, coroutine):
        d = defer.ensureDeferred(coroutine)
        d.addErrback(lambda failure: log.failure("jmap: sending a held submission failed", failure))

    def bodyLimit(self, path: bytes) -> int:
        if path.startswith(core.API_PATH.encode()):
            return self.limits.maxSizeRequest
        if path.startswith(core.UPLOAD_PATH.encode()):
            return self.limits.maxSizeUpload
        if path.startswith(b"/webmail/compose-html"):
            return min(self.context.config.webmail.compose_html_max, self.context.config.limits.http_request_size)
        return min(64 * 1024, self.context.config.limits.http_request_size)

    def tooLargeProblem(self, path: bytes, limit: int) -> dict:
        body = {"type": "about:blank", "status": 413, "detail": f"The body is larger than {limit} bytes."}
        if path.startswith(core.API_PATH.encode()):
            body.update(type=PREFIX + "limit", limit="maxSizeRequest")
        elif path.startswith(core.UPLOAD_PATH.encode()):
            body.update(type=PREFIX + "limit", limit="maxSizeUpload")
        elif path.startswith(b"/webmail/compose-html"):
            body["detail"] += " ([webmail] compose_html_max)"
        return body

    def factory(self, listener):
        return self.site

    def startService(self):
        super().startService()
        if self.outbox is not None:
            # Held submissions of before a restart (undo send): pending again, sent when due.
            d = self.outbox.journal.load().addCallback(self.outbox.restore)
            d.addCallback(lambda n: n and log.info("jmap: {n} held submission(s) restored", n=n))
            d.addErrback(lambda failure: log.failure("jmap: restoring held submissions failed", failure))
            # Push subscriptions of before a restart.
            p = self.userData.loadAll("pushsubscriptions").addCallback(self.pushSender.load)
            p.addCallback(lambda n: n and log.info("jmap: {n} push subscription(s) loaded", n=n))
            p.addErrback(lambda failure: log.failure("jmap: loading push subscriptions failed", failure))
        self.sweeper = task.LoopingCall(self._sweep)
        self.sweeper.clock = self.context.reactor
        self.sweeper.start(SWEEP_INTERVAL, now=True)

    def _sweep(self):
        if self.sessions is not None:
            d = defer.maybeDeferred(self.sessions.sweep)
            d.addErrback(lambda failure: log.failure("webmail: sweeping sessions failed", failure))
        return self.uploads.sweep().addErrback(lambda failure: log.failure("jmap: sweeping uploads failed", failure))

    def stopService(self):
        if self.sweeper is not None and self.sweeper.running:
            self.sweeper.stop()
        return super().stopService()


def makeService(context) -> HTTPService:
    return HTTPService(context)
