"""
DNS for the checks, through twisted.names (the resolver of ``[dns]``, as
the queue's MX lookups).

* :func:`lookupTXT` / :func:`prefetchTXT`: asynchronous TXT lookups on the
  reactor (DKIM keys and DMARC records are fetched before the libraries run,
  so dkimpy never does DNS itself).
* :class:`BlockingDNS`: for pyspf, which only does blocking DNS: called in
  a worker thread, it asks the reactor's resolver and waits for the answer
  (``blockingCallFromThread``), so SPF uses the same servers and timeouts.

A timeout or a server failure is :class:`DNSTemporary` (a ``temperror``
result), never an exception that escapes; no such name or no record of the
type is an empty answer.
"""

from __future__ import annotations

from twisted.internet import defer, threads
from twisted.names import dns, error as dnserror


class DNSTemporary(Exception):
    """A lookup that may succeed later (timeout, SERVFAIL, no server)."""


_EMPTY = (dnserror.DomainError, dnserror.AuthoritativeDomainError, dnserror.DNSNameError)


def _timeouts(seconds):
    return (seconds,)


def _temporary(failure):
    if failure.check(*_EMPTY):
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

    def one(name):
        return lookupTXT(resolver, name, timeout).addErrback(lambda f: f.value if f.check(DNSTemporary)
                                                             else DNSTemporary(f.getErrorMessage()))

    d = defer.gatherResults([one(n) for n in names])
    d.addCallback(lambda values: dict(zip(names, values)))
    return d


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

    def __init__(self, resolver, reactor, timeout: float):
        self.resolver = resolver
        self.reactor = reactor
        self.timeout = timeout
        self.lookups = 0

    def __call__(self, name, qtype, strict=True, timeout=None):
        from spf import TempError

        method = _LOOKUPS.get(qtype)
        if method is None:
            return []
        self.lookups += 1
        wait = min(self.timeout, timeout) if timeout else self.timeout
        try:
            result = threads.blockingCallFromThread(
                self.reactor, getattr(self.resolver, method), name, timeout=_timeouts(max(wait, 0.1)))
        except _EMPTY:
            return []
        except Exception as e:  # timeout, SERVFAIL, refused: RFC 7208 s5 temperror
            raise TempError(f"DNS {type(e).__name__}")
        out = []
        for rr in result[0]:
            kind, value = _value(rr)
            if kind is not None:
                out.append(((str(rr.name), kind), value))
        return out
