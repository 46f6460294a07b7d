"""
Who is asking: the client's address, whether a password may be taken on
this request, and HTTP Basic authentication (RFC 7617) through the one
login sequence (mailnet/login.py: throttle, portal, logging).

The http listener is plain TCP meant to sit behind a TLS proxy.  A
password is taken only when the request comes from loopback or from a
proxy named in ``[http] trusted_proxies`` (and that proxy did not say,
with ``X-Forwarded-Proto: http``, that the client came in without TLS), or
when ``[auth] allow_plaintext`` is on: the same rule as IMAP, POP3 and SMTP
AUTH.  ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only from
those proxies.

Schemes are tried in order (:attr:`Authenticator.schemes`): the first whose
``credentials(request)`` finds something authenticates the request: Basic,
then Bearer (an app password from ``mailnet token add``, RFC 6750), then the webmail's cookie session (:class:`CookieScheme`, which looks the
session up instead of checking a password, and asks for the session's CSRF
token on every request that may change something).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress

from twisted.internet import defer

from mailnet.config import ConfigError
from mailnet.http.session import cookieValue
from mailnet.login import LoginAbandoned, LoginBusy, LoginFailed
from mailnet.logs import Logger
from mailnet.store.interfaces import IAccount, TemporaryStoreError

log = Logger()

REALM = "mailnet"


class AuthRefused(Exception):
    """
    The request is not authenticated.

    @ivar status: 401 (no or bad credentials, or passwords not allowed
        here), 403 (a cookie request without its CSRF token), 429 (too many
        logins waiting), 503 (the check failed).
    @ivar type: the problem type (RFC 7807) of the answer.
    """

    def __init__(self, status, detail, type="about:blank"):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type


CSRF_TYPE = "urn:mailnet:csrf"
CSRF_DETAIL = "missing or wrong X-CSRF-Token"
# Methods that only read (RFC 9110 s9.2.1): no CSRF token asked.
SAFE_METHODS = (b"GET", b"HEAD")


@dataclasses.dataclass
class Principal:
    """
    An authenticated user for one request.

    @ivar username: the canonical login.
    @ivar account: the store's ``IAccount`` (the realm's avatar).
    @ivar logout: call once when the request is done.
    """

    username: str
    account: object
    logout: object
    scheme: str = "basic"
    kept: bool = False  # set by a handler that outlives the request (push, WebSocket)
    address: str = ""  # the client's address (Authenticator.clientAddress): Received of a submission
    _done: bool = False

    def done(self):
        """Log out, once."""
        if not self._done:
            self._done = True
            self.logout()


def parseProxies(values, where="[http] trusted_proxies"):
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not an address or network")
    return networks


def _address(text):
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class BasicScheme:
    """
    HTTP Basic (RFC 7617): user and password, UTF-8.

    A scheme has ``name``, ``challenge()`` (a WWW-Authenticate value or
    None), ``credentials(request)`` (None when the request does not use
    it) and ``authenticate(authenticator, request, credentials, alive)``
    (Deferred: a :class:`Principal`, or :class:`AuthRefused`).  The
    webmail's cookie session will be another scheme.
    """

    name = "basic"

    def challenge(self) -> bytes:
        return f'Basic realm="{REALM}", charset="UTF-8"'.encode()

    def credentials(self, request):
        """(username, password) from the Authorization header, None when absent,
        AuthRefused when malformed."""
        header = request.getHeader(b"authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise AuthRefused(401, "Malformed Basic credentials.")
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise AuthRefused(401, "Malformed Basic credentials.")
        return username, password

    @defer.inlineCallbacks
    def authenticate(self, authenticator, request, credentials, alive=None):
        if not authenticator.passwordsAllowed(request):
            # Nothing is checked: the password may have been seen on the way.
            raise AuthRefused(401, "Passwords are only accepted over TLS (through the TLS proxy).")
        username, password = credentials
        principal = yield authenticator.loginWithPassword(request, username, password, alive)
        return principal


class BearerScheme:
    """
    ``Authorization: Bearer <token>`` (RFC 6750 s2.1): an app password made
    with ``mailnet token add`` (mailnet/tokens.py).  It is a password to us:
    taken only where Basic is (TLS or a trusted proxy or loopback, or
    ``allow_plaintext``), and checked through the same login sequence
    (throttle, logging) with the token's owner as the account, so that
    failures count as Basic's do.  A token nobody owns is checked as the
    unknown account ``(bearer token)``: counted against the client address.
    """

    name = "bearer"
    UNKNOWN = "(bearer token)"

    def __init__(self, tokens):
        self.tokens = tokens

    def challenge(self) -> bytes:
        return f'Bearer realm="{REALM}"'.encode()

    def credentials(self, request):
        header = request.getHeader(b"authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        try:
            token = value.strip().decode("ascii")
        except UnicodeDecodeError:
            token = ""
        # RFC 6750 s2.1: b64token syntax; anything else is malformed.
        if not token or len(token) > 200 or any(c.isspace() for c in token):
            raise AuthRefused(401, "Malformed Bearer credentials.")
        return token

    @defer.inlineCallbacks
    def authenticate(self, authenticator, request, token, alive=None):
        if not authenticator.passwordsAllowed(request):
            raise AuthRefused(401, "Tokens are only accepted over TLS (through the TLS proxy).")
        username = self.tokens.owner(token) or self.UNKNOWN
        principal = yield authenticator.loginWithPassword(request, username, token, alive)
        principal.scheme = "bearer"
        return principal


class CookieScheme:
    """
    The webmail's session cookie (mailnet/http/session.py).  No password
    is checked: the session was made by a login through the login sequence.

    Cross-site request forgery is refused three ways: the cookie is
    SameSite=Strict; a request that may change something (not GET/HEAD)
    must carry the session's token in ``X-CSRF-Token``, which another site
    cannot read nor send without a CORS preflight we never answer; and a
    browser that says the request came from another site
    (``Sec-Fetch-Site: cross-site`` or ``same-site``) is refused even for a
    GET.  A WebSocket handshake cannot carry the header, so it must come
    with an ``Origin`` naming the ``Host`` it was sent to.
    """

    name = "cookie"

    def __init__(self, sessions):
        self.sessions = sessions

    def challenge(self):
        return None

    def credentials(self, request):
        return cookieValue(request.getHeader(b"cookie"))

    @defer.inlineCallbacks
    def authenticate(self, authenticator, request, sessionId, alive=None):
        # The store answers at once (memory) or with a Deferred (PostgreSQL,
        # shared by the nodes); a database outage is a 503, not a logout.
        try:
            session = yield defer.maybeDeferred(self.sessions.find, sessionId)
            if (session is not None and authenticator.userExists is not None
                    and not authenticator.userExists(session.username)):
                yield defer.maybeDeferred(self.sessions.delete, sessionId)  # the user was removed: their sessions end
                session = None
        except TemporaryStoreError:  # the database said why in its own log line
            raise AuthRefused(503, "Cannot check the session now; try again later.")
        except Exception:
            log.failure("http: the session could not be checked")
            raise AuthRefused(503, "Cannot check the session now; try again later.")
        if session is None:
            raise AuthRefused(401, "The session has ended; log in again.")
        checkCSRF(request, session)
        try:
            account, logout = yield authenticator.avatarFor(session.username)
        except Exception:
            raise AuthRefused(503, "Cannot log in now; try again later.")
        return Principal(session.username, account, logout, "cookie")


def crossSite(request) -> bool:
    """The browser says another site sent this request (Fetch Metadata: ``Sec-Fetch-Site``)."""
    site = (request.getHeader(b"sec-fetch-site") or b"").strip().lower()
    return site not in (b"", b"same-origin", b"none")


def checkCSRF(request, session):
    """AuthRefused(403) unless a cookie request is safe from forgery (see :class:`CookieScheme`)."""
    if crossSite(request):
        raise AuthRefused(403, CSRF_DETAIL, CSRF_TYPE)
    if (request.getHeader(b"upgrade") or b"").lower() == b"websocket":
        origin = (request.getHeader(b"origin") or b"").partition(b"://")[2].lower()
        if not origin or origin != (request.getHeader(b"host") or b"").lower():
            raise AuthRefused(403, CSRF_DETAIL, CSRF_TYPE)
    elif request.method not in SAFE_METHODS and not session.csrfMatches(request.getHeader(b"x-csrf-token")):
        raise AuthRefused(403, CSRF_DETAIL, CSRF_TYPE)


class Authenticator:
    """
    @param login: the :class:`~mailnet.login.LoginSequence`.
    @param trustedProxies: ``ip_network`` list (loopback is always trusted).
    @param allowPlaintext: ``[auth] allow_plaintext``.
    @param sessions: the webmail's :class:`~mailnet.http.session.SessionStore`
        or the PostgreSQL store's (methods returning Deferreds); None: no
        cookie sessions.
    @param userExists: ``f(username) -> bool`` (the user directory's
        ``exists``), asked on each cookie request; None: not asked.
    @param tokens: the :class:`~mailnet.tokens.TokenDB` of app passwords
        (Bearer); None: no Bearer scheme.
    """

    def __init__(self, login, trustedProxies=(), allowPlaintext=False, sessions=None, userExists=None,
                 tokens=None):
        self.login = login
        self.trustedProxies = list(trustedProxies)
        self.allowPlaintext = allowPlaintext
        self.sessions = sessions
        self.userExists = userExists
        self.schemes = [BasicScheme()]
        if tokens is not None:
            self.schemes.append(BearerScheme(tokens))
        if sessions is not None:
            self.schemes.append(CookieScheme(sessions))

    def _trusted(self, request):
        address = _address(getattr(request.getClientAddress(), "host", "") or "")
        if address is None:
            return False
        return address.is_loopback or any(address in network for network in self.trustedProxies)

    def clientAddress(self, request) -> str:
        """The client's address: the peer, or for a trusted proxy the last
        address it added to X-Forwarded-For."""
        peer = getattr(request.getClientAddress(), "host", None) or "unix"
        if self._trusted(request):
            forwarded = request.getHeader(b"x-forwarded-for")
            if forwarded:
                last = forwarded.decode("latin-1").split(",")[-1].strip()
                if _address(last) is not None:
                    return last
        return peer

    def passwordsAllowed(self, request) -> bool:
        """RFC 8620 s8.2 / [auth] allow_plaintext: passwords only over TLS."""
        if self.allowPlaintext or request.isSecure():
            return True
        if not self._trusted(request):
            return False
        proto = request.getHeader(b"x-forwarded-proto")
        return proto is None or proto.strip().lower() == b"https"

    def overTLS(self, request) -> bool:
        """The client reached us over TLS: directly, or through a trusted proxy that says so."""
        if request.isSecure():
            return True
        return self._trusted(request) and (request.getHeader(b"x-forwarded-proto") or b"").strip().lower() == b"https"

    def challenges(self, request=None):
        """WWW-Authenticate values for a 401.  A request that came with the
        webmail's cookie gets no Basic challenge: a browser would answer it
        with its own login dialog instead of the app's."""
        if request is not None and self.sessions is not None and cookieValue(request.getHeader(b"cookie")):
            return [f'Cookie realm="{REALM}"'.encode()]
        return [c for c in (scheme.challenge() for scheme in self.schemes) if c]

    def authenticate(self, request, alive=None):
        """Deferred firing with a :class:`Principal`, or failing with :class:`AuthRefused`."""
        try:
            for scheme in self.schemes:
                creds = scheme.credentials(request)
                if creds is not None:
                    d = scheme.authenticate(self, request, creds, alive)
                    return d.addCallback(self._located, request)
        except AuthRefused as e:
            return defer.fail(e)
        return defer.fail(AuthRefused(401, "Authentication required."))

    def _located(self, principal, request):
        principal.address = self.clientAddress(request)
        return principal

    def avatarFor(self, username):
        """Deferred ``(account, logout)``: the store account of a user who
        logged in earlier (a cookie session), from the realm, without a password."""
        d = defer.maybeDeferred(self.login.portal.realm.requestAvatar, username, None, IAccount)
        return d.addCallback(lambda result: (result[1], result[2]))

    @defer.inlineCallbacks
    def loginWithPassword(self, request, username, password, alive=None):
        """The one login sequence (mailnet/login.py: throttle, portal, logging) for this request."""
        peer = self.clientAddress(request)
        try:
            account, logout = yield self.login.login("http", peer, username, password, IAccount, alive=alive)
        except LoginFailed:
            raise AuthRefused(401, "Invalid credentials.")
        except LoginBusy:
            raise AuthRefused(429, "Too many logins waiting; try again later.")
        except LoginAbandoned:
            raise AuthRefused(401, "The client went away.")
        except Exception:
            raise AuthRefused(503, "Cannot log in now; try again later.")
        return Principal(getattr(account, "username", None) or username, account, logout, "basic")
