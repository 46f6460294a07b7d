"""
The JMAP endpoints on twisted.web (RFC 8620): the session resource, the
API, blob upload and download.  Thin: authentication is
:mod:`mailnet.http.auth`, the request handling is :mod:`mailnet.jmap`
(pure), the bytes of blobs are :mod:`mailnet.http.blobstore`.
EventSource is :mod:`mailnet.http.eventsource`.
"""

from __future__ import annotations

import re
import urllib.parse

from twisted.internet import defer
from twisted.protocols.basic import FileSender
from twisted.web import server

from mailnet.http.auth import AuthRefused
from mailnet.http.site import allowMethods, notFound, pathSegments, problem, writeJSON
from mailnet.jmap import core, jsonstream
from mailnet.jmap.dispatch import Context, processRequest
from mailnet.jmap.errors import PREFIX, RequestError
from mailnet.jmap.request import parseRequest
from mailnet.logs import Logger
from mailnet.store.interfaces import TemporaryStoreError

log = Logger()

# Blobs up to this size are written in one go; larger ones are streamed.
SMALL = 64 * 1024

# A media type we repeat in Content-Type: type/subtype with an optional charset.
MEDIA_TYPE = re.compile(rb"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}"
                        rb"(; ?charset=[A-Za-z0-9_.:-]{1,40})?\Z")


class HTTPError(Exception):
    def __init__(self, status, detail, type="about:blank", **extra):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type
        self.extra = extra


class Counter:
    """In-progress requests per user, for maxConcurrentRequests and maxConcurrentUpload."""

    def __init__(self):
        self.counts = {}

    def take(self, key, limit) -> bool:
        count = self.counts.get(key, 0)
        if count >= limit:
            return False
        self.counts[key] = count + 1
        return True

    def give(self, key):
        count = self.counts.get(key, 0) - 1
        if count > 0:
            self.counts[key] = count
        else:
            self.counts.pop(key, None)


# Types a browser may show in a tab (the webmail's image attachments): raster images, never
# SVG or HTML (which could run script; their CSP sandbox stops it too).
INLINE_TYPES = (b"image/png", b"image/jpeg", b"image/gif", b"image/webp")


def contentDisposition(name: str, inline=False) -> bytes:
    """``attachment`` (or ``inline``) with the name (RFC 6266 s4.3: an ASCII fallback and filename*)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%/' else "_" for c in name)[:200] or "download"
    encoded = urllib.parse.quote(name[:200], safe="")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}".encode("ascii")


class JSONProducer:
    """
    A push producer (IPushProducer) writing the pieces of a JSON answer
    while the transport lets it: TCP pauses it once its buffer is past its
    size and resumes it when drained, so a slow client holds the server to
    about that buffer plus one piece (a piece is at most a few hundred KB).
    """

    def __init__(self, request, pieces):
        self.request = request
        self.pieces = jsonstream.iterBytes(pieces)
        self.done = defer.Deferred()
        self.paused = False
        self.writing = False

    def resumeProducing(self):
        self.paused = False
        if self.writing or self.done.called:
            return  # called from within our own write: the loop below goes on
        self.writing = True
        try:
            while not self.paused and not self.done.called:
                piece = next(self.pieces, None)
                if piece is None:
                    self.request.unregisterProducer()
                    self.done.callback(True)
                else:
                    self.request.write(piece)  # may pause us (the transport's buffer is full)
        finally:
            self.writing = False

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        if not self.done.called:
            self.done.callback(False)


async def writeStreamed(request, value):
    """
    The API's 200 answer: small ones in one write (Content-Length), large
    ones (with a :class:`~mailnet.jmap.jsonstream.LazyText`) in pieces with
    chunked transfer coding and flow control.  The whole of ``value`` is
    computed and its JSON checked (:func:`~mailnet.jmap.jsonstream.encodePieces`)
    before the status line goes out, so nothing can fail half way.
    """
    pieces = jsonstream.encodePieces(value)
    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/json")
    if len(pieces) == 1:
        request.setHeader(b"content-length", b"%d" % len(pieces[0]))
        request.write(pieces[0])
        request.finish()
        return
    if request._disconnected:
        return
    producer = JSONProducer(request, pieces)
    request.notifyFinish().addBoth(lambda _: producer.stopProducing())  # the client went away: stop
    request.registerProducer(producer, True)
    producer.resumeProducing()
    if await producer.done and not request._disconnected:
        request.finish()


class JMAPResource:
    """
    The JMAP part of the site.

    @param settings: the ``[http]`` config namespace.
    @param registry: the :class:`~mailnet.jmap.dispatch.Registry`.
    @param authenticator: :class:`~mailnet.http.auth.Authenticator`.
    @param blobs: :class:`~mailnet.jmap.blobs.BlobLookup` (reads).
    @param uploads: :class:`~mailnet.http.blobstore.UploadStore` (writes).
    """

    def __init__(self, registry, limits, authenticator, blobs, uploads, clock):
        self.registry = registry
        self.limits = limits
        self.auth = authenticator
        self.blobs = blobs
        self.uploads = uploads
        self.clock = clock
        self.requests = Counter()
        self.uploadsInProgress = Counter()
        # Called with each Account a request uses (the store's blob source learns accountId -> account).
        self.accountHooks = []
        # More services for the methods (Context.services): hostname, limits, submission...
        self.services = {}

    def routes(self):
        return {
            b"/.well-known/jmap": self.session,
            core.API_PATH.encode(): self.api,
            core.UPLOAD_PATH.encode(): self.upload,
            core.DOWNLOAD_PATH.encode(): self.download,
        }

    # Plumbing

    def serve(self, request, handler, *args):
        """Run ``handler(request, principal, *args)`` (async) after authentication."""
        d = defer.ensureDeferred(self._serve(request, handler, *args))
        d.addErrback(request.processingFailed)
        return server.NOT_DONE_YET

    async def _serve(self, request, handler, *args):
        gone = []
        request.notifyFinish().addErrback(lambda failure: gone.append(True))
        principal = None
        try:
            principal = await self.auth.authenticate(request, alive=lambda: not gone)
            await handler(request, principal, *args)
        except AuthRefused as e:
            if not gone:
                if e.status == 401:
                    for challenge in self.auth.challenges(request):
                        request.responseHeaders.addRawHeader(b"www-authenticate", challenge)
                problem(request, e.status, e.type, e.detail)
        except RequestError as e:
            if not gone:
                problem(request, e.status, PREFIX + e.type, e.detail,
                        **({"limit": e.limit} if e.limit is not None else {}))
        except HTTPError as e:
            if not gone:
                problem(request, e.status, e.type, e.detail, **e.extra)
        finally:
            if principal is not None and not principal.kept:
                principal.done()

    def accountsOf(self, principal):
        accounts = [core.accountFor(self.registry, principal.username, principal.account)]
        for hook in self.accountHooks:
            for account in accounts:
                hook(account)
        return accounts

    def base(self, request) -> str:
        """``scheme://host`` for absolute URLs in the session (RFC 8620 s2)."""
        host = request.getHeader(b"host")
        if not host or not re.fullmatch(rb"[A-Za-z0-9.:\[\]-]{1,300}", host):
            return ""
        secure = request.isSecure() or (self.auth._trusted(request)
                                         and (request.getHeader(b"x-forwarded-proto") or b"").lower() == b"https")
        return ("https://" if secure else "http://") + host.decode("ascii")

    # The session resource (RFC 8620 s2)

    def session(self, request, rest):
        if not allowMethods(request, b"GET", b"HEAD"):
            return server.NOT_DONE_YET
        return self.serve(request, self._session)

    async def _session(self, request, principal):
        value = core.sessionObject(self.registry, principal.username, self.accountsOf(principal),
                                   self.limits, self.base(request))
        writeJSON(request, 200, value)

    # The API (RFC 8620 s3)

    def api(self, request, rest):
        if rest:
            notFound(request)
            return server.NOT_DONE_YET
        if not allowMethods(request, b"POST"):
            return server.NOT_DONE_YET
        return self.serve(request, self._api)

    async def _api(self, request, principal):
        key = principal.username.lower()
        if not self.requests.take(key, self.limits.maxConcurrentRequests):
            raise RequestError("limit", f"At most {self.limits.maxConcurrentRequests} requests at once.",
                               status=429, limit="maxConcurrentRequests")
        try:
            body = request.content.read(self.limits.maxSizeRequest + 1)
            if len(body) > self.limits.maxSizeRequest:
                raise RequestError("limit", f"Requests are limited to {self.limits.maxSizeRequest} bytes.",
                                   status=413, limit="maxSizeRequest")
            parsed = parseRequest(body, (request.getHeader(b"content-type") or b"").decode("latin-1"),
                                  self.registry.capabilities, self.limits.maxCallsInRequest)
            response = await self.answer(principal, parsed, self.base(request))
        finally:
            self.requests.give(key)
        await writeStreamed(request, response)

    async def answer(self, principal, parsed, base):
        """The response object to a checked request (the API and the WebSocket share it)."""
        accounts = self.accountsOf(principal)
        sessionState = core.sessionObject(self.registry, principal.username, accounts, self.limits, base)["state"]
        context = Context(principal.username, {a.id: a for a in accounts}, self.limits,
                          dict(self.services, blobs=self.blobs, clock=self.clock, sessionState=sessionState,
                               clientAddress=getattr(principal, "address", "") or "127.0.0.1"))
        return await processRequest(self.registry, parsed, context)

    # Upload (RFC 8620 s6.1)

    def upload(self, request, rest):
        if not allowMethods(request, b"POST"):
            return server.NOT_DONE_YET
        accountId = rest.rstrip(b"/").decode("latin-1")
        return self.serve(request, self._upload, accountId)

    async def _upload(self, request, principal, accountId):
        accounts = {a.id for a in self.accountsOf(principal)}
        if accountId not in accounts:
            raise HTTPError(404, "No such account.", PREFIX + "accountNotFound")
        key = principal.username.lower()
        if not self.uploadsInProgress.take(key, self.limits.maxConcurrentUpload):
            raise RequestError("limit", f"At most {self.limits.maxConcurrentUpload} uploads at once.",
                               status=429, limit="maxConcurrentUpload")
        try:
            contentType = request.getHeader(b"content-type") or b"application/octet-stream"
            if not MEDIA_TYPE.match(contentType):
                contentType = b"application/octet-stream"
            request.content.seek(0)
            try:
                blobId, size = await self.uploads.save(accountId, request.content, type=contentType.decode("ascii"))
            except TemporaryStoreError:
                # Shared uploads (PostgreSQL) while the database is away: try again later.
                raise HTTPError(503, "The upload cannot be stored now; try again later.") from None
        finally:
            self.uploadsInProgress.give(key)
        writeJSON(request, 201, {"accountId": accountId, "blobId": blobId,
                                 "type": contentType.decode("ascii"), "size": size})

    # Download (RFC 8620 s6.2)

    def download(self, request, rest):
        if not allowMethods(request, b"GET", b"HEAD"):
            return server.NOT_DONE_YET
        segments = pathSegments(request, rest, 3)
        if segments is None:
            return server.NOT_DONE_YET
        return self.serve(request, self._download, *segments)

    async def _download(self, request, principal, accountId, blobId, name):
        accounts = {a.id for a in self.accountsOf(principal)}
        try:
            blob = await self.blobs.find(accountId, blobId) if accountId in accounts else None
            if blob is None:
                raise HTTPError(404, "No such blob.")
            try:
                opened = blob.open()
                if isinstance(opened, defer.Deferred):
                    opened = await opened
            except (LookupError, FileNotFoundError):
                # Swept (it expired) between the look-up and the open: gone, as if never found.
                raise HTTPError(404, "No such blob.") from None
        except TemporaryStoreError:
            raise HTTPError(503, "The blob cannot be read now; try again later.") from None
        wanted = (request.args.get(b"type") or [b""])[0]
        contentType = wanted if MEDIA_TYPE.match(wanted) else b"application/octet-stream"
        try:
            request.setHeader(b"content-type", contentType)
            request.setHeader(b"content-length", b"%d" % blob.size)
            request.setHeader(b"content-disposition", contentDisposition(name, contentType in INLINE_TYPES))
            # Never run by the browser: no sniffing, and a sandbox CSP even
            # when opened directly (RFC 8620 s8.6 warns of exactly this).
            request.setHeader(b"content-security-policy", b"default-src 'none'; sandbox")
            # The same id is always the same bytes.
            request.setHeader(b"cache-control", b"private, max-age=604800, immutable")
            if request.method == b"HEAD":
                request.finish()
                return
            if blob.size <= SMALL:
                request.write(opened.read(SMALL))
            else:
                try:
                    await FileSender().beginFileTransfer(opened, request)
                except Exception:
                    if request._disconnected:
                        return  # the client went away mid-transfer
                    raise
        finally:
            opened.close()
        if not request._disconnected:
            request.finish()
