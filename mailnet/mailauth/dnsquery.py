"""
DNS for the checks, through twisted.names (the resolver of ``[dns]``, as
the queue's MX lookups).

* :func:`lookupTXT` / :func:`prefetchTXT`: asynchronous TXT lookups on the
  reactor (DKIM keys and DMARC records are fetched before the libraries run,
  so dkimpy never does DNS itself).
* :class:`BlockingDNS`: for pyspf, which only does blocking DNS: called in
  a worker thread, it asks the reactor's resolver and waits for the answer
  (a bounded wait), so SPF uses the same servers and timeouts.

A timeout or a server failure is :class:`DNSTemporary` (a ``temperror``
result), never an exception that escapes; no such name or no record of the
type is an empty answer.
"""

from __future__ import annotations

import threading

from twisted.internet import defer
from twisted.names import dns, error as dnserror
from twisted.python.failure import Failure


class DNSTemporary(Exception):
    """A lookup that may succeed later (timeout, SERVFAIL, no server)."""


# twisted.names makes SERVFAIL, REFUSED and the like subclasses of DomainError,
# the "no such name" error: those are temporary, only NXDOMAIN is an answer.
_FAILED = (dnserror.DNSServerError, dnserror.DNSQueryRefusedError, dnserror.DNSFormatError,
           dnserror.DNSNotImplementedError, dnserror.DNSUnknownError)
_EMPTY = (dnserror.DomainError, dnserror.AuthoritativeDomainError, dnserror.DNSNameError)


def _isEmpty(failure) -> bool:
    """No such name (or no record of the type): an answer, not a failure."""
    return failure.check(*_EMPTY) is not None and failure.check(*_FAILED) is None


def _timeouts(seconds):
    return (seconds,)


def _temporary(failure):
    if _isEmpty(failure):
        return []
    raise DNSTemporary(failure.getErrorMessage() or failure.type.__name__)


def _texts(result, name):
    answers = result[0]
    out = []
    for rr in answers:
        if rr.type == dns.TXT:
            out.append(b"".join(rr.payload.data))
    return out


def lookupTXT(resolver, name: str, timeout: float) -> defer.Deferred:
    """
    The TXT records of ``name``, each one's strings joined (RFC 7208 s3.3,
    RFC 6376 s3.6.2.2): Deferred firing with a list of bytes (empty when
    there is none), or failing with :class:`DNSTemporary`.
    """
    d = resolver.lookupText(name, timeout=_timeouts(timeout))
    d.addCallbacks(_texts, _temporary, callbackArgs=(name,))
    return d


def prefetchTXT(resolver, names, timeout: float) -> defer.Deferred:
    """
    Deferred firing with ``{name: [records] | DNSTemporary}`` for every name,
    all asked at once.
    """
    names = list(dict.fromkeys(names))
    if hasattr(resolver, "peekEntry"):
        # Every answer cached (a sender seen lately): the dictionary now, without a Deferred per name.
        found = cachedTXT(resolver, names)
        if found is not None:
            return defer.succeed(found)

    def one(name):
        return lookupTXT(resolver, name, timeout).addErrback(lambda f: f.value if f.check(DNSTemporary)
                                                             else DNSTemporary(f.getErrorMessage()))

    d = defer.gatherResults([one(n) for n in names])
    d.addCallback(lambda values: dict(zip(names, values)))
    return d


def cachedTXT(cache, names):
    """What :func:`prefetchTXT` would give for ``names`` from a :class:`CachingResolver`'s
    cache alone, or None when one of them is not cached."""
    out = {}
    for name in names:
        try:
            result = cache.peek("lookupText", name)
        except KeyError:
            return None
        # only answers and kept "no such name" failures are cached (never a temporary failure)
        out[name] = [] if isinstance(result, Failure) else _texts(result, name)
    return out


_LOOKUPS = {
    "A": "lookupAddress",
    "AAAA": "lookupIPV6Address",
    "MX": "lookupMailExchange",
    "TXT": "lookupText",
    "SPF": "lookupSenderPolicy",
    "PTR": "lookupPointer",
    "CNAME": "lookupCanonicalName",
}


def _value(rr):
    """An answer in the form pyspf's dnspython lookup gives it."""
    p = rr.payload
    if rr.type == dns.A:
        return "A", p.dottedQuad()
    if rr.type == dns.AAAA:
        import socket

        return "AAAA", socket.inet_ntop(socket.AF_INET6, p.address)
    if rr.type == dns.MX:
        return "MX", (p.preference, str(p.name))
    if rr.type in (dns.TXT, dns.SPF):
        return ("TXT" if rr.type == dns.TXT else "SPF"), tuple(p.data)
    if rr.type == dns.PTR:
        return "PTR", str(p.name)
    if rr.type == dns.CNAME:
        return "CNAME", str(p.name)
    return None, None


class BlockingDNS:
    """
    pyspf's ``DNSLookup(name, qtype, strict, timeout)``, answered by the
    reactor's resolver.  Call it only from a worker thread.

    @param counter: a one-item list counting the lookups (tests, logs).
    """

    def __init__(self, resolver, reactor, timeout: float, stopping=None):
        self.resolver = resolver
        self.reactor = reactor
        self.timeout = timeout
        self.stopping = stopping  # a threading.Event set when the server stops
        self.lookups = 0

    def _ask(self, lookup, name, wait):
        """
        ``lookup(name)`` on the reactor, waited for here at most a little
        longer than its own timeout (unlike ``blockingCallFromThread``, which
        waits for ever: a reactor stopping while it joins this thread would
        never run the call).
        """
        if self.stopping is not None and self.stopping.is_set():
            raise DNSTemporary("server stopping")
        done = threading.Event()
        box = []

        def start():
            d = defer.maybeDeferred(lookup, name, timeout=_timeouts(wait))
            d.addBoth(lambda r: (box.append(r), done.set()))

        self.reactor.callFromThread(start)
        if not done.wait(wait + 1):
            raise DNSTemporary("no answer in time")
        result = box[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def __call__(self, name, qtype, strict=True, timeout=None):
        from spf import TempError

        method = _LOOKUPS.get(qtype)
        if method is None:
            return []
        self.lookups += 1
        wait = max(min(self.timeout, timeout) if timeout else self.timeout, 0.1)
        try:
            result = self._ask(getattr(self.resolver, method), name, wait)
        except Exception as e:  # timeout, SERVFAIL, refused: RFC 7208 s5 temperror
            if isinstance(e, _EMPTY) and not isinstance(e, _FAILED):
                return []
            raise TempError(f"DNS {type(e).__name__}")
        return _answers(result)


def _answers(result):
    out = []
    for rr in result[0]:
        kind, value = _value(rr)
        if kind is not None:
            out.append(((str(rr.name), kind), value))
    return out


class CacheMiss(Exception):
    """:class:`CacheOnlyDNS` has no answer yet: do the check in a thread."""


class CacheOnlyDNS:
    """
    pyspf's ``DNSLookup`` answered from :class:`CachingResolver`'s cache only,
    on the reactor thread: SPF for a sender domain seen recently costs no
    thread round trip.  A name not in the cache raises :class:`CacheMiss`
    (and sets ``missed``, in case pyspf swallowed it: it does around the
    ``exp=`` lookup), and the caller runs the check again with
    :class:`BlockingDNS` in a thread.
    """

    def __init__(self, cache):
        self.cache = cache
        self.missed = False
        self.lookups = 0
        self.expires = None  # when the first of the answers given out expires (None: none given)

    def __call__(self, name, qtype, strict=True, timeout=None):
        method = _LOOKUPS.get(qtype)
        if method is None:
            return []
        self.lookups += 1
        try:
            expiry, result = self.cache.peekEntry(method, name)
            if self.expires is None or expiry < self.expires:
                self.expires = expiry
        except KeyError:
            self.missed = True
            raise CacheMiss(name)
        if isinstance(result, Failure):
            return []  # only "no such name" is kept
        return _answers(result)


class CachingResolver:
    """
    A small answer cache in front of a twisted.names resolver, for the
    checks: the same sender domains come again and again (their SPF, DKIM
    key and DMARC records), and twisted.names' client keeps nothing.

    Answers are kept for their smallest TTL, at most ``maxTTL`` seconds;
    "no such name" for ``negativeTTL`` (RFC 2308 lets a resolver cache it);
    timeouts and server failures are never kept.  At most ``maxEntries``,
    the oldest dropped first (bounded memory).
    """

    def __init__(self, resolver, clock, maxEntries=10000, maxTTL=3600, negativeTTL=60):
        self.resolver = resolver
        self.clock = clock
        self.maxEntries = maxEntries
        self.maxTTL = maxTTL
        self.negativeTTL = negativeTTL
        self.entries = {}  # (method, name) -> (expiry, result or Failure)

    def __getattr__(self, method):
        if not method.startswith("lookup"):
            raise AttributeError(method)
        lookup = getattr(self.resolver, method)

        def cached(name, timeout=None):
            key = (method, name.lower().rstrip(".") if isinstance(name, str) else name)
            now = self.clock.seconds()
            hit = self.entries.get(key)
            if hit is not None:
                if hit[0] > now:
                    return defer.fail(hit[1]) if isinstance(hit[1], Failure) else defer.succeed(hit[1])
                del self.entries[key]
            d = defer.maybeDeferred(lookup, name, timeout=timeout)
            d.addBoth(self._remember, key, now)
            return d

        return cached

    def peek(self, method, name):
        """The cached answer (or kept "no such name" Failure) now; KeyError if none."""
        return self.peekEntry(method, name)[1]

    def peekEntry(self, method, name):
        """``(expiry, answer)`` of :meth:`peek`: until when the cache keeps it."""
        key = (method, name.lower().rstrip(".") if isinstance(name, str) else name)
        hit = self.entries.get(key)
        if hit is None or hit[0] <= self.clock.seconds():
            raise KeyError(key)
        return hit

    def _remember(self, result, key, now):
        if isinstance(result, Failure):
            if _isEmpty(result):
                self._put(key, now + self.negativeTTL, result)
            return result
        ttls = [rr.ttl for section in result for rr in section if getattr(rr, "ttl", None) is not None]
        ttl = min([self.maxTTL] + ttls)
        if ttl > 0:
            self._put(key, now + ttl, result)
        return result

    def _put(self, key, expiry, result):
        if len(self.entries) >= self.maxEntries:
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = (expiry, result)
