"""
The webmail's server side (docs/webmail.md "Server side"): the app's
static files at ``/`` and ``/webmail/static/``, cookie logins
(``/webmail/login``, ``/webmail/session``, ``/webmail/logout``), HTML
body parts cleaned for a sandboxed frame (``/webmail/html/...``), the
HTML a user wrote cleaned before it is sent (``/webmail/compose-html``,
mailnet/http/htmltext.py), and the app's per-user settings
(``/webmail/settings``).

The app is a JMAP client: everything else it does goes through the JMAP
resources, which take the session cookie (mailnet/http/auth.py
``CookieScheme``).  Sessions are mailnet/http/session.py, the cleaning is
mailnet/http/sanitize.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re

from twisted.internet import defer
from twisted.web import server

from mailnet.http import htmltext, sanitize
from mailnet.http.htmlpart import loadHTMLPart
from mailnet.http.auth import CSRF_TYPE, AuthRefused, checkCSRF, crossSite
from mailnet.http.session import clearCookie, cookieValue, setCookie
from mailnet.http.site import allowMethods, notFound, pathSegments, problem, writeJSON
from mailnet.logs import Logger
from mailnet.store.interfaces import TemporaryStoreError

log = Logger()

STATIC_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "webmail")

# The app's pages: its own scripts, styles and frames only (docs/webmail.md).
APP_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
           b"frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".mjs": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".json": b"application/json",
    ".webmanifest": b"application/manifest+json",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".jpg": b"image/jpeg",
    ".gif": b"image/gif",
    ".webp": b"image/webp",
    ".ico": b"image/vnd.microsoft.icon",
    ".woff2": b"font/woff2",
    ".txt": b"text/plain; charset=utf-8",
}
COMPRESSIBLE = (".html", ".js", ".mjs", ".css", ".json", ".webmanifest", ".svg", ".txt", ".ico")
# A path segment we serve: no dot files, no "..", no encoded slashes, no odd characters.
SEGMENT = re.compile(rb"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}\Z")
MAX_STATIC = 8 * 1024 * 1024

# An HTML body part larger than this is cut (a frame of megabytes helps nobody).
HTML_MAX = 4 * 1024 * 1024
# Part ids as JMAP gives them (mailnet/jmap/emailbody.py: IMAP numbering).
PART_ID = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6}){0,30}\Z")


def appHeaders(request):
    """The headers of every answer that is part of the app (the contract's list)."""
    request.setHeader(b"content-security-policy", APP_CSP)
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")


def frameCSP(remote: bool) -> bytes:
    """The CSP of a cleaned HTML part: nothing runs, nothing loads but data: images (and remote ones when asked)."""
    images = b"data: http: https:" if remote else b"data:"
    return (b"default-src 'none'; img-src " + images + b"; style-src 'unsafe-inline'; base-uri 'none'; "
            b"form-action 'none'; frame-ancestors 'self'")


def fail(request, status, message):
    """The webmail endpoints' error body: ``{"error": message}``."""
    writeJSON(request, status, {"error": message})


class StaticFiles:
    """
    Files under ``root``, read on demand and kept in memory while their
    size and mtime stay the same (the app is a few hundred kilobytes).
    """

    def __init__(self, root=STATIC_ROOT):
        self.root = os.path.realpath(root)
        self.cache = {}  # path -> (stamp, data, etag, gzipped or None)

    def resolve(self, rest: bytes):
        """The file for a URL path below the root, or None (never outside it)."""
        segments = rest.split(b"/")
        if not rest or not all(SEGMENT.match(s) for s in segments) or any(s.startswith(b".") for s in segments):
            return None
        path = os.path.realpath(os.path.join(self.root, *(s.decode("ascii") for s in segments)))
        if not path.startswith(self.root + os.sep):
            return None  # a symlink out of the tree
        return path

    def load(self, path):
        """``(data, etag, gzipped)`` of a regular file, or None."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not os.path.isfile(path) or st.st_size > MAX_STATIC:
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        cached = self.cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1:]
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_STATIC + 1)
        except OSError:
            return None
        etag = b'"' + hashlib.sha256(data).hexdigest()[:32].encode() + b'"'
        gzipped = None
        if path.endswith(COMPRESSIBLE) and len(data) > 512:
            gzipped = gzip.compress(data, 9, mtime=0)
            if len(gzipped) >= len(data):
                gzipped = None
        self.cache[path] = (stamp, data, etag, gzipped)
        return data, etag, gzipped

    def serve(self, request, path):
        """Answer with a file (ETag, 304, gzip) or 404."""
        appHeaders(request)
        loaded = self.load(path) if path else None
        if loaded is None:
            notFound(request)
            return server.NOT_DONE_YET
        data, etag, gzipped = loaded
        request.setHeader(b"content-type", TYPES.get(os.path.splitext(path)[1].lower(), b"application/octet-stream"))
        request.setHeader(b"etag", etag)
        # Revalidated each time (RFC 9111 s5.2.2.4): an upgrade is seen at once, a 304 costs nothing.
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"vary", b"Accept-Encoding")
        if etag in _etags(request.getHeader(b"if-none-match")):
            request.setResponseCode(304)  # RFC 9110 s13.1.2
            request.finish()
            return server.NOT_DONE_YET
        if gzipped is not None and _acceptsGzip(request.getHeader(b"accept-encoding")):
            data = gzipped
            request.setHeader(b"content-encoding", b"gzip")
        request.setHeader(b"content-length", b"%d" % len(data))
        if request.method != b"HEAD":
            request.write(data)
        request.finish()
        return server.NOT_DONE_YET


def _etags(header):
    if not header:
        return ()
    if header.strip() == b"*":
        return _Everything()
    return [t.strip().removeprefix(b"W/") for t in header.split(b",")]


class _Everything:
    def __contains__(self, item):
        return True


def _acceptsGzip(header) -> bool:
    """RFC 9110 s12.5.3: gzip listed without q=0."""
    for item in (header or b"").lower().split(b","):
        name, _, params = item.strip().partition(b";")
        if name.strip() in (b"gzip", b"x-gzip"):
            q = params.strip()
            return not re.fullmatch(rb"q\s*=\s*0(\.0*)?", q)
    return False


class Webmail:
    """
    @param jmap: the :class:`~mailnet.http.api.JMAPResource` (authentication, accounts).
    @param sessions: the :class:`~mailnet.http.session.SessionStore`, or the
        PostgreSQL store's shared one (its methods return Deferreds).
    @param inlineImageMax: ``[webmail] inline_image_max``.
    @param userData: the :class:`~mailnet.jmap.identity.IUserData` keeping the
        settings (None: the settings are the defaults and cannot change).
    @param composeHTMLMax: ``[webmail] compose_html_max``.
    """

    def __init__(self, jmap, sessions, inlineImageMax=2 * 1024 * 1024, static=None, userData=None,
                 composeHTMLMax=1024 * 1024):
        self.jmap = jmap
        self.auth = jmap.auth
        self.sessions = sessions
        self.inlineImageMax = inlineImageMax
        self.static = static or StaticFiles()
        self.userData = userData
        self.composeHTMLMax = composeHTMLMax

    def routes(self):
        return {
            b"/": self.index,
            b"/webmail/static/": self.file,
            b"/webmail/login": self.login,
            b"/webmail/session": self.session,
            b"/webmail/logout": self.logout,
            b"/webmail/html/": self.html,
            b"/webmail/compose-html": self.composeHTML,
            b"/webmail/settings": self.settings,
        }

    # The app's files

    def index(self, request, rest):
        if rest:  # "/" is every path's prefix: anything else is not ours
            appHeaders(request)
            notFound(request)
            return server.NOT_DONE_YET
        if not allowMethods(request, b"GET", b"HEAD"):
            return server.NOT_DONE_YET
        return self.static.serve(request, self.static.resolve(b"index.html"))

    def file(self, request, rest):
        if not allowMethods(request, b"GET", b"HEAD"):
            return server.NOT_DONE_YET
        return self.static.serve(request, self.static.resolve(rest))

    # Login, session, logout

    def login(self, request, rest):
        appHeaders(request)
        if not allowMethods(request, b"POST"):
            return server.NOT_DONE_YET
        if crossSite(request):
            fail(request, 403, "Log in from the webmail's own page.")
            return server.NOT_DONE_YET
        # JSON only: a form on another site cannot send it without a CORS preflight.
        contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if contentType != b"application/json":
            fail(request, 415, "The login is a JSON object.")
            return server.NOT_DONE_YET
        try:
            body = json.loads(request.content.read(64 * 1024).decode("utf-8"))
            username, password = body["username"], body["password"]
            if not (isinstance(username, str) and isinstance(password, str) and username and len(username) < 1000
                    and len(password) < 4096):
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            fail(request, 400, 'Send {"username": ..., "password": ...}.')
            return server.NOT_DONE_YET
        if not self.auth.passwordsAllowed(request):
            # The rule of Basic auth (mailnet/http/auth.py): nothing is checked.
            fail(request, 403, "Passwords are only accepted over TLS (through the TLS proxy).")
            return server.NOT_DONE_YET
        gone = []
        request.notifyFinish().addErrback(lambda failure: gone.append(True))
        d = self.auth.loginWithPassword(request, username, password, alive=lambda: not gone)
        d.addCallbacks(self._loggedIn, self._loginFailed, callbackArgs=(request, gone), errbackArgs=(request, gone))
        d.addErrback(request.processingFailed)
        return server.NOT_DONE_YET

    def _loggedIn(self, principal, request, gone):
        principal.done()  # the session keeps the name only; each request gets its own avatar
        if gone:
            return None
        # The memory store answers at once; PostgreSQL's once the row is committed.
        d = defer.maybeDeferred(self.sessions.create, principal.username)
        d.addCallbacks(self._created, self._sessionsDown, callbackArgs=(request, gone),
                       errbackArgs=(request, gone, "Cannot log in now; try again later."))
        return d

    def _created(self, result, request, gone):
        if gone:
            return
        sessionId, session = result
        request.setHeader(b"set-cookie", setCookie(sessionId, self.auth.overTLS(request)))
        writeJSON(request, 200, {"username": session.username, "csrf": session.csrf})

    def _sessionsDown(self, failure, request, gone, message):
        """The sessions could not be read or written (the database is down): 503, nothing ended."""
        if not failure.check(TemporaryStoreError):
            log.failure("webmail: the sessions failed", failure)
        if not gone:
            fail(request, 503, message)

    def _loginFailed(self, failure, request, gone):
        failure.trap(AuthRefused)
        if gone:
            return
        e = failure.value
        fail(request, e.status, "Login failed" if e.status == 401 else e.detail)

    def _answer(self, request, f, *args):
        """``f(request, *args)`` for a request that may end before it runs (a Deferred of the sessions)."""
        gone = []
        request.notifyFinish().addErrback(lambda failure: gone.append(True))
        d = defer.maybeDeferred(f, request, *args)
        d.addErrback(self._sessionsDown, request, gone, "Cannot check the session now; try again later.")
        d.addErrback(request.processingFailed)
        return server.NOT_DONE_YET

    def session(self, request, rest):
        appHeaders(request)
        if not allowMethods(request, b"GET"):
            return server.NOT_DONE_YET
        return self._answer(request, self._session)

    @defer.inlineCallbacks
    def _session(self, request):
        current = None
        if not crossSite(request):
            current = yield defer.maybeDeferred(self.sessions.find, cookieValue(request.getHeader(b"cookie")))
        if request._disconnected:
            return
        if current is None:
            request.setHeader(b"www-authenticate", b'Cookie realm="mailnet"')
            fail(request, 401, "Not logged in.")
        else:
            writeJSON(request, 200, {"username": current.username, "csrf": current.csrf})

    def logout(self, request, rest):
        appHeaders(request)
        if not allowMethods(request, b"POST"):
            return server.NOT_DONE_YET
        return self._answer(request, self._logout)

    @defer.inlineCallbacks
    def _logout(self, request):
        sessionId = cookieValue(request.getHeader(b"cookie"))
        current = yield defer.maybeDeferred(self.sessions.find, sessionId)
        secure = self.auth.overTLS(request)
        if current is None:
            if not request._disconnected:
                request.setHeader(b"set-cookie", clearCookie(secure))
                request.setHeader(b"www-authenticate", b'Cookie realm="mailnet"')
                fail(request, 401, "Not logged in.")
            return
        try:
            checkCSRF(request, current)
        except AuthRefused as e:
            problem(request, e.status, CSRF_TYPE, e.detail)
            return
        # Ended on every node (PostgreSQL) once this fires; the answer follows.
        yield defer.maybeDeferred(self.sessions.delete, sessionId)
        log.info("http: {user} logged out of the webmail", user=current.username)
        if request._disconnected:
            return
        request.setHeader(b"set-cookie", clearCookie(secure))
        request.setResponseCode(204)
        request.finish()

    # HTML body parts

    def html(self, request, rest):
        if not allowMethods(request, b"GET", b"HEAD"):
            return server.NOT_DONE_YET
        segments = pathSegments(request, rest, 3, "ascii")
        if segments is None:
            return server.NOT_DONE_YET
        remote = (request.args.get(b"remote") or [b""])[0] == b"1"
        return self.jmap.serve(request, self._html, *segments, remote)

    async def _html(self, request, principal, accountId, emailId, partId, remote):
        accounts = {a.id: a for a in self.jmap.accountsOf(principal)}
        account = accounts.get(accountId)
        found = None
        if account is not None and PART_ID.match(partId):
            found = await loadHTMLPart(account.backend, emailId, partId, self.inlineImageMax, HTML_MAX)
        if found is None:
            notFound(request)
            return
        text, images = found
        cleaned = sanitize.clean(text, images=images, remote=remote)
        body = cleaned.document().encode("utf-8")
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-security-policy", frameCSP(remote))
        request.setHeader(b"x-frame-options", b"SAMEORIGIN")
        request.setHeader(b"x-mailnet-remote-content", b"%d" % cleaned.remote)
        request.setHeader(b"cache-control", b"private, no-store")
        request.setHeader(b"content-length", b"%d" % len(body))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    # The HTML a user wrote, cleaned before it is sent

    def composeHTML(self, request, rest):
        appHeaders(request)
        if rest or not allowMethods(request, b"POST"):
            return server.NOT_DONE_YET
        return self.jmap.serve(request, self._composeHTML)

    async def _composeHTML(self, request, principal):
        # The body's size is bounded before this runs (server.py bodyLimit: [webmail] compose_html_max).
        body = _jsonBody(request, self.composeHTMLMax)
        source = body.get("html") if isinstance(body, dict) else None
        if body is TOO_LARGE:
            problem(request, 413, "about:blank", f"The body is larger than {self.composeHTMLMax} bytes."
                    " ([webmail] compose_html_max)")
            return
        if not isinstance(source, str):
            problem(request, 400, "urn:mailnet:badRequest", 'Send {"html": "..."}.')
            return
        cleaned = htmltext.cleanOutgoing(source)
        writeJSON(request, 200, {"html": cleaned, "text": htmltext.toText(cleaned)})

    # Per-user settings of the app (RFC 8621 has no place for them)

    def settings(self, request, rest):
        appHeaders(request)
        if rest or not allowMethods(request, b"GET", b"PUT"):
            return server.NOT_DONE_YET
        return self.jmap.serve(request, self._settings)

    async def _settings(self, request, principal):
        try:
            await self._settingsOf(request, principal)
        except TemporaryStoreError:  # the database's outage (several nodes): try again, no 500
            problem(request, 503, "urn:mailnet:unavailable", "The settings cannot be reached now; try again later.")

    async def _settingsOf(self, request, principal):
        current = dict(SETTINGS)
        if request.method == b"GET":
            if self.userData is not None:
                current.update(_validSettings(await self.userData.load(principal.username, "webmail")))
            writeJSON(request, 200, current)
            return
        change = _jsonBody(request, 64 * 1024)
        if not isinstance(change, dict) or not change or _validSettings(change) != change:
            problem(request, 400, "urn:mailnet:badRequest",
                    "Send an object of settings: " + ", ".join(f"{k} ({type(v).__name__})" for k, v in SETTINGS.items()))
            return
        if self.userData is None:
            problem(request, 403, "urn:mailnet:forbidden", "This server keeps no settings.")
            return
        # Written atomically and fsynced (mailnet/http/userdata.py) before the answer.
        saved = await self.userData.update(principal.username, "webmail",
                                           lambda old: dict(_validSettings(old), **change))
        current.update(_validSettings(saved))
        writeJSON(request, 200, current)


# The app's settings and their defaults.
SETTINGS = {"plainText": False}


def _validSettings(value) -> dict:
    """The known settings of a stored or sent object, each of the right type."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if k in SETTINGS and type(v) is type(SETTINGS[k])}


def _jsonBody(request, limit):
    contentType = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if contentType != b"application/json":
        return None
    data = request.content.read(limit + 1)
    if len(data) > limit:
        return TOO_LARGE
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


TOO_LARGE = object()
