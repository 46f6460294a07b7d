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
``credentials(request)`` finds something authenticates the request.  The
webmail's cookie session will be one more scheme (its ``authenticate``
looks the session up instead of checking a password).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress

from twisted.internet import defer

from mailnet.config import ConfigError
from mailnet.login import LoginAbandoned, LoginBusy, LoginFailed
from mailnet.store.interfaces import IAccount

REALM = "mailnet"


class AuthRefused(Exception):
    """
    The request is not authenticated.

    @ivar status: 401 (no or bad credentials, or passwords not allowed
        here), 429 (too many logins waiting), 503 (the check failed).
    """

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status
        self.detail = detail


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


class Authenticator:
    """
    @param login: the :class:`~mailnet.login.LoginSequence`.
    @param trustedProxies: ``ip_network`` list (loopback is always trusted).
    @param allowPlaintext: ``[auth] allow_plaintext``.
    """

    def __init__(self, login, trustedProxies=(), allowPlaintext=False):
        self.login = login
        self.trustedProxies = list(trustedProxies)
        self.allowPlaintext = allowPlaintext
        self.schemes = [BasicScheme()]

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

    def challenges(self):
        return [c for c in (scheme.challenge() for scheme in self.schemes) if c]

    def authenticate(self, request, alive=None):
        """Deferred firing with a :class:`Principal`, or failing with :class:`AuthRefused`."""
        try:
            for scheme in self.schemes:
                creds = scheme.credentials(request)
                if creds is not None:
                    return scheme.authenticate(self, request, creds, alive)
        except AuthRefused as e:
            return defer.fail(e)
        return defer.fail(AuthRefused(401, "Authentication required."))

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
