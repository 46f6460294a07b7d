"""
MTA-STS (RFC 8461) policies of the domains we deliver to: the ``_mta-sts``
TXT lookup (twisted.names, the queue's resolver), the HTTPS fetch
(twisted.web's Agent, certificate checked, no redirects, 64 KB, a time
limit) and the durable cache in ``data_dir/mtasts/<domain>.json``.

The pure parts (TXT, policy, matching) are :mod:`mailnet.mailauth.mtasts`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

from twisted.internet import defer, endpoints, protocol, ssl
from twisted.python.failure import Failure
from twisted.web import client, http_headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from mailnet import durable
from mailnet.logs import Logger
from mailnet.mailauth import dnsquery, mtasts

log = Logger()

POLICY_PATH = "/.well-known/mta-sts.txt"
UNLISTED = "MX host not listed in the MTA-STS policy"
RETRY_FAILED = 300  # seconds a failed fetch is remembered, so that each connection does not wait for it again
MAX_FAILED = 10000  # failed domains remembered at most (bounded memory)
_DOMAIN_FILE = re.compile(r"[a-z0-9.-]{1,253}\Z")


class FetchError(Exception):
    """The policy could not be had; ``kind`` is RFC 8460's result type."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclasses.dataclass
class Lookup:
    """
    What :meth:`PolicyFetcher.policyFor` found.

    @ivar policy: the :class:`~mailnet.mailauth.mtasts.Policy` to apply, or None.
    @ivar error: an RFC 8460 result type (``sts-policy-fetch-error``,
        ``sts-policy-invalid``, ``sts-webpki-invalid``) when a fetch failed,
        with ``reason``; the cached policy, if any, is still applied (s5.1).
    """

    policy: mtasts.Policy | None = None
    cached: bool = False
    error: str | None = None
    reason: str = ""


class PolicyCache:
    """The policies in ``directory``, one JSON file per domain, written with :mod:`mailnet.durable`."""

    def __init__(self, directory):
        self.directory = directory

    def _path(self, domain):
        if not _DOMAIN_FILE.match(domain) or domain.startswith("."):
            return None
        return os.path.join(self.directory, domain + ".json")

    def load(self, domain):
        """``{"id", "text", "fetched", "expires"}`` or None; a damaged file is logged and removed."""
        path = self._path(domain)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                entry = json.loads(f.read(mtasts.MAX_POLICY_SIZE * 2))
            mtasts.parsePolicy(entry["text"])
            if not isinstance(entry["id"], str) or not all(isinstance(entry[k], (int, float)) for k in ("fetched", "expires")):
                raise ValueError("bad field types")
            return entry
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("mta-sts: the cached policy of {domain} is damaged ({e}); it is removed", domain=domain, e=e)
            try:
                os.unlink(path)
            except OSError:
                pass
            return None

    def save(self, domain, policyId, policy, now):
        path = self._path(domain)
        if path is None:
            return
        entry = {"id": policyId, "text": policy.text, "fetched": now, "expires": now + policy.max_age}
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            durable.writeAtomically(path, json.dumps(entry, indent=1).encode(), mode=0o600)
        except OSError as e:
            log.error("mta-sts: cannot cache the policy of {domain}: {e}", domain=domain, e=e.strerror)


@implementer(IAgentEndpointFactory)
class _OneAddress:
    """Connects the Agent to the address we looked up, with TLS checked for the policy host's name."""

    def __init__(self, reactor, ip, port, hostname, trustRoot, timeout):
        self.reactor, self.ip, self.port = reactor, ip, port
        self.hostname, self.trustRoot, self.timeout = hostname, trustRoot, timeout

    def endpointForURI(self, uri):
        kind = endpoints.TCP6ClientEndpoint if ":" in self.ip else endpoints.TCP4ClientEndpoint
        tcp = kind(self.reactor, self.ip, self.port, timeout=self.timeout)
        # RFC 8461 s3.3: the certificate must be valid for mta-sts.<domain> (WebPKI).
        return endpoints.wrapClientTLS(ssl.optionsForClientTLS(self.hostname, trustRoot=self.trustRoot), tcp)


class _LimitedBody(protocol.Protocol):
    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.size = 0
        self.done = defer.Deferred(lambda _: self.transport.stopProducing())

    def dataReceived(self, data):
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()
            if not self.done.called:
                self.done.errback(FetchError("sts-policy-fetch-error", "the policy is larger than 64 KB"))
            return
        self.parts.append(data)

    def connectionLost(self, reason):
        if self.done.called:
            return
        if reason.check(client.ResponseDone) or reason.check(client.PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(FetchError("sts-policy-fetch-error", f"the policy's body was cut off: {reason.getErrorMessage()}"))


def _isTLS(failure):
    from OpenSSL import SSL

    value = failure.value
    if isinstance(value, client.ResponseNeverReceived):
        return any(_isTLS(r) for r in value.reasons)
    return failure.check(SSL.Error) is not None or type(value).__name__ == "VerificationError"


class PolicyFetcher:
    """
    @param reactor: TCP and time.
    @param config: the :class:`~mailnet.config.Config` (``[mtasts]``, ``[dns]``).
    @param resolver: an ``IResolver`` for the TXT lookups.
    @param addresses: ``f(name) -> Deferred of (addresses, problem)``
        (:meth:`mailnet.queue.mx.MXResolver._addresses`).
    @param trustRoot: what checks the policy host's certificate (None: the system's).
    """

    def __init__(self, reactor, config, resolver, addresses, trustRoot=None):
        self.reactor = reactor
        self.config = config
        self.resolver = resolver
        self.addresses = addresses
        self.trustRoot = trustRoot
        self.cache = PolicyCache(os.path.join(config.server.data_dir, "mtasts"))
        self.failed = {}  # (domain, id) -> (until, FetchError)

    @defer.inlineCallbacks
    def policyFor(self, domain):
        """The policy to apply to ``domain``'s MX hosts now: Deferred firing with a :class:`Lookup` (never fails)."""
        domain = domain.lower().rstrip(".")
        now = self.reactor.seconds()
        cached = self.cache.load(domain)
        if cached is not None and cached["expires"] <= now:
            cached = None  # RFC 8461 s5.1: an expired policy is not used
        timeout = self.config.mtasts.fetch_timeout
        try:
            records = yield dnsquery.lookupTXT(self.resolver, f"_mta-sts.{domain}", timeout)
            policyId = mtasts.parseTXT([r.decode("utf-8", "replace") for r in records])
        except (dnsquery.DNSTemporary, mtasts.PolicyError) as e:
            # s5.1: no usable record now: a cached policy still applies.
            log.info("mta-sts: _mta-sts.{domain}: {e}", domain=domain, e=e)
            policyId = cached["id"] if cached is not None else None
        except Exception as e:
            log.info("mta-sts: _mta-sts.{domain} lookup failed: {e}", domain=domain, e=e)
            policyId = cached["id"] if cached is not None else None
        if policyId is None:
            if cached is not None:
                return Lookup(mtasts.parsePolicy(cached["text"]), cached=True)
            return Lookup()
        if cached is not None and cached["id"] == policyId:
            # s5.1: the same id: the cached policy, refreshed in the background once half its age has passed.
            policy = mtasts.parsePolicy(cached["text"])
            if now - cached["fetched"] > policy.max_age / 2:
                self._refresh(domain, policyId)
            return Lookup(policy, cached=True)
        try:
            remembered = self.failed.get((domain, policyId))
            if remembered is not None and remembered[0] > now:
                raise remembered[1]
            policy = yield self.fetch(domain)
        except FetchError as e:
            if remembered is None or remembered[0] <= now:
                log.warn("mta-sts: the policy of {domain} could not be fetched: {e}", domain=domain, e=e.message)
                if len(self.failed) >= MAX_FAILED:
                    self.failed.clear()
                self.failed[(domain, policyId)] = (now + RETRY_FAILED, e)
            if cached is not None:
                return Lookup(mtasts.parsePolicy(cached["text"]), cached=True, error=e.kind, reason=e.message)
            return Lookup(None, error=e.kind, reason=e.message)
        self.failed.pop((domain, policyId), None)
        self.cache.save(domain, policyId, policy, now)
        log.info("mta-sts: policy of {domain} (id {id}): mode {mode}, mx {mx}, max_age {age}",
                 domain=domain, id=policyId, mode=policy.mode, mx=",".join(policy.mx), age=policy.max_age)
        return Lookup(policy)

    def _refresh(self, domain, policyId):
        def save(policy):
            self.cache.save(domain, policyId, policy, self.reactor.seconds())

        self.fetch(domain).addCallbacks(save, lambda f: log.info("mta-sts: refreshing the policy of {domain} failed: {e}",
                                                                 domain=domain, e=f.getErrorMessage()))

    def fetch(self, domain):
        """Deferred firing with the :class:`~mailnet.mailauth.mtasts.Policy`, or failing with :class:`FetchError`."""
        d = self._fetch(domain)
        timeout = self.config.mtasts.fetch_timeout
        expired = []

        def expire():
            expired.append(True)
            d.cancel()

        timer = self.reactor.callLater(timeout, expire)

        def done(result):
            if timer.active():
                timer.cancel()
            if expired and isinstance(result, Failure):
                # Whatever the cancelled request failed with (the Agent wraps it): too slow.
                return Failure(FetchError("sts-policy-fetch-error", f"no policy within {timeout} seconds"))
            return result

        return d.addBoth(done)

    @defer.inlineCallbacks
    def _fetch(self, domain):
        host = f"mta-sts.{domain}"
        addresses, problem = yield self.addresses(host)
        if not addresses:
            raise FetchError("sts-policy-fetch-error", f"{host} has no address ({problem.message if problem else 'none'})")
        port = self.config.mtasts.https_port
        url = f"https://{host}{'' if port == 443 else f':{port}'}{POLICY_PATH}".encode()
        agent = client.Agent.usingEndpointFactory(
            self.reactor, _OneAddress(self.reactor, addresses[0], port, host, self.trustRoot, self.config.mtasts.fetch_timeout))
        try:
            # The plain Agent follows no redirects (RFC 8461 s3.3: they MUST NOT be followed).
            response = yield agent.request(b"GET", url, http_headers.Headers({b"User-Agent": [b"mailnet MTA-STS"]}))
        except defer.CancelledError:
            raise
        except Exception as e:
            if _isTLS(Failure(e)):
                # RFC 8460 s4.3.2.2: the policy host's certificate did not validate.
                raise FetchError("sts-webpki-invalid", f"TLS with {host} failed: {_text(e)}")
            raise FetchError("sts-policy-fetch-error", f"cannot fetch https://{host}{POLICY_PATH}: {_text(e)}")
        if response.code != 200:
            response.deliverBody(_Discard())
            what = "a redirect (not followed, RFC 8461 s3.3)" if 300 <= response.code < 400 else "not 200"
            raise FetchError("sts-policy-fetch-error", f"https://{host}{POLICY_PATH} answered {response.code}: {what}")
        contentType = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        if contentType.split(b";")[0].strip().lower() != b"text/plain":
            response.deliverBody(_Discard())
            raise FetchError("sts-policy-fetch-error",
                             f"the policy's Content-Type is not text/plain (RFC 8461 s3.3): {contentType[:60].decode('latin-1')}")
        if response.length is not client.UNKNOWN_LENGTH and response.length > mtasts.MAX_POLICY_SIZE:
            response.deliverBody(_Discard())
            raise FetchError("sts-policy-fetch-error", "the policy is larger than 64 KB")
        reader = _LimitedBody(mtasts.MAX_POLICY_SIZE)
        response.deliverBody(reader)
        body = yield reader.done
        try:
            return mtasts.parsePolicy(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise FetchError("sts-policy-invalid", "the policy is not UTF-8")
        except mtasts.PolicyError as e:
            raise FetchError("sts-policy-invalid", str(e))


class _Discard(protocol.Protocol):
    def connectionMade(self):
        self.transport.stopProducing()


def _text(e):
    if isinstance(e, client.ResponseNeverReceived):
        return "; ".join(r.getErrorMessage() for r in e.reasons)[:300] or "no response"
    return (str(e) or type(e).__name__)[:300]


def loadTrustRoot(path):
    """The trust root for ``path`` (PEM CA certificates), or the system's when empty."""
    if not path:
        return ssl.platformTrust()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as f:
        certs = x509.load_pem_x509_certificates(f.read())
    return ssl.trustRootFromCertificates(
        [ssl.Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)) for c in certs])


class Plan:
    """
    The MTA-STS decision for one connection to a domain (RFC 8461 s4, s5),
    and what it reports to TLS-RPT (RFC 8460).

    @ivar hosts: the MX hosts to try; with ``enforce``, only those the policy names.
    """

    def __init__(self, domain, lookup, hosts, results):
        self.domain = domain
        self.lookup = lookup
        self.policy = lookup.policy if lookup.policy is not None and lookup.policy.mode != "none" else None
        self.mode = self.policy.mode if self.policy is not None else None
        self.results = results
        self.noPolicy = False  # counted as RFC 8460's no-policy-found: TLS or not, as it happened
        if results is not None and (self.policy is not None or lookup.error):
            from mailnet.mailauth import tlsrpt

            self.entry = tlsrpt.policyEntry("sts" if lookup.policy is not None else "no-policy-found", domain, lookup.policy)
        elif results is not None and lookup.policy is None:
            # RFC 8460 s4.4: sessions to a domain without a policy are reported too ("no-policy-found"),
            # so that a domain publishing only a _smtp._tls record learns how its mail arrives.
            from mailnet.mailauth import tlsrpt

            self.entry = tlsrpt.policyEntry("no-policy-found", domain)
            self.noPolicy = True
        else:
            self.entry = None
        if lookup.error and lookup.policy is None:
            # A session with no policy because the fetch failed (RFC 8460 s4.3.2.2).  With a cached
            # policy the session is judged by that one instead, so it is not counted twice.
            self._report(lookup.error, reason=lookup.reason)
        self.hosts = hosts
        if self.mode == "enforce":
            # RFC 8461 s4.1, s5: only the MX hosts the policy lists.
            self.hosts = [h for h in hosts if self.policy.matches(h.name)]
            if not self.hosts:
                for host in hosts:
                    self._report("validation-failure", host.name, reason=UNLISTED)

    def _report(self, kind, host=None, ip=None, reason="", source=None):
        """One failed session; ``source``: our address on the connection (RFC 8460 s4.3 sending-mta-ip)."""
        if self.entry is not None:
            self.results.failure(self.entry, kind, host, ip, reason, sendingIp=source)

    def noHost(self):
        from mailnet.errors import DeliveryError

        return DeliveryError(451, "4.7.5", f"MTA-STS policy of {self.domain} (enforce) lists none of its MX hosts "
                             f"(policy mx: {', '.join(self.policy.mx)}); not delivered", True)

    def tlsMode(self, host, mode):
        """The relay's TLS mode for ``host``: verified where the policy names it (s5: enforce and testing)."""
        if self.policy is not None and self.policy.matches(host.name) and mode == "opportunistic":
            return "required"
        return mode

    def fallBack(self, mode, error) -> bool:
        """In testing mode, after a TLS failure with a verified attempt: deliver as before (s5)."""
        return self.mode == "testing" and mode == "required" and (
            error.enhanced in ("4.7.10", "4.7.5") or getattr(error, "tlsFailed", False))

    def succeeded(self, host, ip, mode, tls=None, source=None):
        """
        A session is set up with ``host``; ``tls``: whether it went over TLS
        (None: unknown); ``source``: the address we connected from.
        """
        if self.noPolicy:
            if tls:
                self.results.success(self.entry)
            elif tls is not None:
                self._report("starttls-not-supported", host, ip, "no STARTTLS offered; delivered without TLS", source)
            return
        if self.entry is None or self.policy is None:
            return
        if not self.policy.matches(host):
            self._report("validation-failure", host, ip, UNLISTED, source)  # testing: delivered to an unlisted MX
        elif mode == "required":
            self.results.success(self.entry)

    def failed(self, host, ip, mode, error):
        """A session with ``host`` failed; ``error.sendingIp``: the address we connected from, if we did."""
        source = getattr(error, "sendingIp", None)
        if self.noPolicy and mode == "opportunistic" and getattr(error, "tlsFailed", False):
            # opportunistic TLS failed (the relay then goes on without it): counted by its kind
            from mailnet.mailauth import tlsrpt

            self._report(tlsrpt.resultType(error), host, ip, error.message, source)
            return
        if mode == "required" and self.policy is not None and (error.enhanced in ("4.7.10", "4.7.5")
                                                               or getattr(error, "tlsFailed", False)):
            from mailnet.mailauth import tlsrpt

            kind = tlsrpt.resultType(error)
            log.info("mta-sts: {domain}: {kind} at {host}[{ip}] (mode {mode}): {e}", domain=self.domain, kind=kind,
                     host=host, ip=ip, mode=self.mode, e=error.message)
            self._report(kind, host, ip, error.message, source)
            if self.mode == "enforce":
                # The reason the mail waits (and, after the lifetime, the DSN's diagnostic) names the policy.
                error.message = f"MTA-STS policy of {self.domain} (enforce): {error.message}"


class Outbound:
    """What the relay asks before connecting to a domain: :meth:`plan`."""

    def __init__(self, fetcher, results):
        self.fetcher = fetcher
        self.results = results

    @defer.inlineCallbacks
    def plan(self, domain, hosts):
        lookup = yield self.fetcher.policyFor(domain)
        return Plan(domain, lookup, hosts, self.results)


def makeOutbound(reactor, config, mxResolver):
    """The relay's MTA-STS (``[mtasts] enabled``), or None."""
    if not config.mtasts.enabled:
        return None
    from mailnet.mailauth import tlsrpt

    fetcher = PolicyFetcher(reactor, config, mxResolver.resolver, mxResolver._addresses,
                            trustRoot=loadTrustRoot(config.mtasts.ca_file))
    results = tlsrpt.TLSResults(os.path.join(config.server.data_dir, "tlsrpt"), reactor) if config.mtasts.reports else None
    return Outbound(fetcher, results)


def makeReporter(reactor, config, outbound, resolver, spool):
    """The daily TLS-RPT reports of ``outbound``'s counts (``[mtasts] reports``), or None."""
    if outbound is None or outbound.results is None:
        return None
    from mailnet.mailauth import tlsrpt
    from mailnet.mailauth.ownmail import OwnMailSigner

    from mailnet.mailauth.tlsrptpost import ReportPoster

    fetcher = outbound.fetcher
    # rua=https: the receiver's address from the same resolver, its certificate checked like a policy host's
    poster = ReportPoster(reactor, fetcher.addresses, fetcher.trustRoot, config.mtasts.fetch_timeout)
    return tlsrpt.Reporter(reactor, config, outbound.results, resolver, spool, OwnMailSigner(config, reactor), poster)
