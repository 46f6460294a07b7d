"""
Where to deliver a domain's mail: MX resolution with twisted.names.

RFC 5321 s5.1: the MX records in preference order (equal preferences in
random order), each host's addresses; no MX at all means the domain itself
is the host (the "implicit MX").  RFC 7505: a single MX of "." (the null
MX) means the domain takes no mail, which fails the recipients at once.

The resolver is injected (any ``IResolver``), so tests use a dictionary;
:func:`makeResolver` builds the real one from ``[dns]``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import socket

from twisted.internet import defer
from twisted.names import client, dns, error as dnserror, hosts

from mailnet.errors import DeliveryError
from mailnet.logs import Logger

log = Logger()

MAX_HOSTS = 5  # MX hosts tried per attempt (Postfix smtp_mx_address_limit: 5)


@dataclasses.dataclass
class Host:
    """One host to try: its name (for TLS and Remote-MTA), MX preference and addresses."""

    name: str
    preference: int
    addresses: list


def makeResolver(config, reactor=None):
    """
    The resolver for ``[dns]``: the listed nameservers (``ip:port``) or the
    system's (/etc/resolv.conf).  Address lookups consult /etc/hosts first,
    as the C library would (so a smarthost named ``localhost`` works; see
    :class:`MXResolver`).
    """
    timeout = config.dns.timeout
    timeouts = (min(2, timeout), timeout) if timeout > 2 else (timeout,)
    servers = []
    for entry in config.dns.nameservers:
        host, _, port = entry.rpartition(":")
        if not host:
            host, port = entry, "53"
        servers.append((host.strip("[]"), int(port or 53)))
    if servers:
        dnsResolver = client.Resolver(servers=servers, timeout=timeouts, reactor=reactor)
    else:
        dnsResolver = client.Resolver(resolv=b"/etc/resolv.conf", timeout=timeouts, reactor=reactor)
    return dnsResolver


class LazyResolver:
    """
    Makes the real resolver at the first lookup: twisted.names' client
    schedules a periodic re-read of resolv.conf as soon as it exists, which
    a server that relays nothing does not need.
    """

    def __init__(self, make):
        self._make = make
        self._resolver = None

    def __getattr__(self, name):
        if not name.startswith("lookup"):
            raise AttributeError(name)
        if self._resolver is None:
            self._resolver = self._make()
        return getattr(self._resolver, name)


def _ipLiteral(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _domainLiteral(domain):
    """``[127.0.0.1]`` / ``[IPv6:::1]`` (RFC 5321 s4.1.3) -> the address, or None."""
    if domain.startswith("[") and domain.endswith("]"):
        inner = domain[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        return _ipLiteral(inner)
    return None


class MXResolver:
    """
    @param resolver: an ``IResolver`` (twisted.names) for MX, A and AAAA.
    @param rng: ``random.Random`` for shuffling equal preferences.
    @param hostsFile: path of a hosts file consulted for addresses first, or None.
    """

    def __init__(self, resolver, rng=None, hostsFile=b"/etc/hosts"):
        self.resolver = resolver
        self.rng = rng or random.Random()
        self.hostsResolver = hosts.Resolver(hostsFile) if hostsFile else None

    @defer.inlineCallbacks
    def hostsFor(self, domain: str):
        """
        The hosts to try for a domain, best first.

        @return: Deferred firing with a non-empty list of :class:`Host`
            (addresses filled in, hosts without addresses dropped), or failing
            with :class:`DeliveryError`: permanent for a domain that does not
            exist, has a null MX, or no mail host at all; temporary for DNS
            trouble.
        """
        domain = domain.rstrip(".").lower()
        literal = _domainLiteral(domain)
        if literal:
            return [Host(literal, 0, [literal])]
        try:
            answers, _, _ = yield self.resolver.lookupMailExchange(domain)
        except dnserror.DNSNameError:
            raise DeliveryError(550, "5.1.2", f"domain {domain} does not exist (DNS: no such domain)", False)
        except dnserror.DomainError:
            raise DeliveryError(550, "5.1.2", f"domain {domain} does not exist (DNS: no such domain)", False)
        except Exception as e:
            raise DeliveryError(451, "4.4.3", f"DNS lookup of the MX of {domain} failed: {_dnsText(e)}", True)
        records = [rr.payload for rr in answers if rr.type == dns.MX]
        if not records:
            # RFC 5321 s5.1: no MX: the domain itself, as an implicit MX of preference 0.
            addresses, problem = yield self._addresses(domain)
            if addresses:
                return [Host(domain, 0, addresses)]
            if problem is not None and problem.temporary:
                raise problem
            raise DeliveryError(550, "5.1.2", f"domain {domain} has no MX and no address record: it takes no mail", False)
        exchanges = [(r.preference, str(r.name).rstrip(".").lower()) for r in records]
        if all(name == "" for _, name in exchanges):
            # RFC 7505 s3-4: a null MX: the domain accepts no mail.
            raise DeliveryError(556, "5.1.10", f"domain {domain} accepts no mail (null MX, RFC 7505)", False)
        exchanges = [(pref, name) for pref, name in exchanges if name]
        ordered = []
        for pref in sorted({p for p, _ in exchanges}):
            group = sorted({name for p, name in exchanges if p == pref})
            self.rng.shuffle(group)  # RFC 5321 s5.1: equal preferences in random order
            ordered += [(pref, name) for name in group]
        ordered = ordered[:MAX_HOSTS]
        results = yield defer.gatherResults([self._addresses(name) for _, name in ordered])
        found = []
        problems = []
        for (pref, name), (addresses, problem) in zip(ordered, results):
            if addresses:
                found.append(Host(name, pref, addresses))
            elif problem is not None:
                problems.append(problem)
        if not found:
            why = "; ".join(p.message for p in problems) or "no addresses"
            raise DeliveryError(451, "4.4.4", f"no MX host of {domain} has an address ({why})", True)
        return found

    @defer.inlineCallbacks
    def hostFor(self, hostport: str):
        """``[relay] smarthost`` ("host:port") -> (port, [Host]); never MX (RFC 5321 s5.1 does not apply)."""
        host, _, port = hostport.rpartition(":")
        host = host.strip("[]")
        literal = _ipLiteral(host)
        if literal:
            return int(port), [Host(host, 0, [literal])]
        addresses, problem = yield self._addresses(host.lower())
        if not addresses:
            raise problem or DeliveryError(451, "4.4.4", f"smarthost {host} has no address", True)
        return int(port), [Host(host.lower(), 0, addresses)]

    @defer.inlineCallbacks
    def _addresses(self, name):
        """
        A and AAAA addresses of a name (IPv4 first).

        @return: Deferred firing with ``(addresses, problem)``: problem is a
            :class:`DeliveryError` explaining an empty list, or None.
        """
        if self.hostsResolver is not None:
            try:
                local = yield self._lookup(self.hostsResolver, name)
            except Exception:
                local = []
            if local:
                return local, None
        found = []
        problems = []
        for lookup in (self.resolver.lookupAddress, self.resolver.lookupIPV6Address):
            try:
                answers, _, _ = yield lookup(name)
            except (dnserror.DNSNameError, dnserror.DomainError):
                problems.append(DeliveryError(550, "5.1.2", f"{name}: no such host", False))
                continue
            except Exception as e:
                problems.append(DeliveryError(451, "4.4.3", f"DNS lookup of {name} failed: {_dnsText(e)}", True))
                continue
            found += _addressesIn(answers)
        if found:
            return list(dict.fromkeys(found)), None
        temporary = [p for p in problems if p.temporary]
        if temporary:
            return [], temporary[0]
        return [], problems[0] if problems else DeliveryError(550, "5.1.2", f"{name} has no address record", False)

    @defer.inlineCallbacks
    def _lookup(self, resolver, name):
        found = []
        for lookup in (resolver.lookupAddress, resolver.lookupIPV6Address):
            try:
                answers, _, _ = yield lookup(name)
            except Exception:
                continue
            found += _addressesIn(answers)
        return found


def _addressesIn(answers):
    out = []
    for rr in answers:
        if rr.type == dns.A:
            out.append(socket.inet_ntop(socket.AF_INET, rr.payload.address))
        elif rr.type == dns.AAAA:
            out.append(socket.inet_ntop(socket.AF_INET6, rr.payload.address))
    return out


def _dnsText(e):
    if isinstance(e, defer.TimeoutError) or isinstance(e, dnserror.DNSQueryTimeoutError):
        return "timeout"
    if isinstance(e, dnserror.DNSServerError):
        return "server failure (SERVFAIL)"
    if isinstance(e, dnserror.DNSQueryRefusedError):
        return "refused"
    return str(e) or type(e).__name__
