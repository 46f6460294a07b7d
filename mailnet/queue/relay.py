"""
Opening relay sessions: from a destination (a domain, or the smarthost) to
a ready :class:`~mailnet.queue.client.SMTPClientProtocol`.

RFC 5321 s5.1: the MX hosts in order, each address of each host, until
one gives a usable session; a refused connection, a timeout, or a 4xx/5xx
greeting or EHLO moves on to the next.  When none works the last error is
the outcome, always temporary: a host that refuses to talk (a 554 greeting)
delays the mail rather than bouncing it, as Postfix does by default
(``smtp_skip_5xx_greeting``), so that a blocklisting or a misconfiguration
fixed within the lifetime loses nothing.

TLS policy per session:

* MX delivery: opportunistic STARTTLS (no certificate check; RFC 7435).
  If the handshake fails, the same host is tried once more without
  STARTTLS, as Postfix does, since plaintext is what the peer would get
  from a client that does not try.  Domains in ``[relay] require_tls``
  must offer STARTTLS and present a certificate valid for the MX host name
  (checked with service_identity); otherwise the attempt fails temporarily.
* Smarthost: ``[relay] smarthost_tls``: ``starttls`` (required and
  verified for the smarthost's name), ``implicit`` (TLS from the first
  byte, verified) or ``opportunistic``.  The password is read from
  ``smarthost_password_file`` at each connection and only sent over TLS
  (or to a loopback address).

Certificates are checked against ``[relay] tls_ca_file`` when set, else the
system's trust store.
"""

from __future__ import annotations

import ipaddress

from twisted.internet import defer, endpoints, error as ierror, ssl

from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.queue import mx
from mailnet.queue.client import ClientFactory, SMTPClientProtocol
from mailnet.queue.clientmachine import ClientMachine
from mailnet.queue.scheduler import SMARTHOST

log = Logger()

MAX_ADDRESSES = 5  # addresses tried per attempt (Postfix smtp_mx_address_limit)


def isLoopback(ip) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class SMTPConnector:
    """
    The ``connector`` of :class:`~mailnet.queue.scheduler.QueueRunner`.

    @param reactor: the reactor (TCP, time).
    @param config: the :class:`~mailnet.config.Config`.
    @param resolver: an :class:`~mailnet.queue.mx.MXResolver`.
    """

    def __init__(self, reactor, config, resolver: mx.MXResolver):
        self.reactor = reactor
        self.config = config
        self.resolver = resolver
        self._trust = None
        self._opportunistic = None
        self.sts = None  # MTA-STS (mailnet.mailauth.mtastsfetch.Outbound), when [mtasts] enabled

    # TLS options

    def _trustRoot(self):
        if self._trust is None:
            path = self.config.relay.tls_ca_file
            if path:
                from cryptography import x509
                from cryptography.hazmat.primitives import serialization

                with open(path, "rb") as f:
                    certs = x509.load_pem_x509_certificates(f.read())
                self._trust = ssl.trustRootFromCertificates(
                    [ssl.Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM)) for c in certs])
            else:
                self._trust = ssl.platformTrust()
        return self._trust

    def verifiedOptions(self, hostname):
        """TLS that checks the certificate is valid for ``hostname`` (service_identity)."""
        return ssl.optionsForClientTLS(hostname, trustRoot=self._trustRoot())

    def opportunisticOptions(self):
        """TLS that encrypts without checking who is at the other end (RFC 7435)."""
        if self._opportunistic is None:  # made once: building it costs a cipher selection
            self._opportunistic = ssl.CertificateOptions(verify=False)
        return self._opportunistic

    # Sessions

    def _policy(self, destination):
        relay = self.config.relay
        if destination == SMARTHOST:
            auth = None
            if relay.smarthost_user:
                auth = (relay.smarthost_user, self._password())
            mode = {"starttls": "required", "implicit": "implicit", "opportunistic": "opportunistic"}[relay.smarthost_tls]
            return mode, auth
        required = {d.lower().rstrip(".") for d in relay.require_tls}
        return ("required" if destination in required else "opportunistic"), None

    def _password(self):
        path = self.config.relay.smarthost_password_file
        if not path:
            return ""
        try:
            with open(path, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as e:
            raise DeliveryError(451, "4.7.0", f"cannot read [relay] smarthost_password_file: {e.strerror}", True)

    @defer.inlineCallbacks
    def connect(self, destination):
        """
        A ready session for ``destination``.

        @return: Deferred firing with a ready :class:`SMTPClientProtocol`, or
            failing with :class:`DeliveryError`.
        """
        mode, auth = self._policy(destination)
        if destination == SMARTHOST:
            port, hosts = yield self.resolver.hostFor(self.config.relay.smarthost)
        else:
            hosts = yield self.resolver.hostsFor(destination)
            port = self.config.relay.mx_port
        plan = None
        if self.sts is not None and destination != SMARTHOST:
            # RFC 8461 s5: the policy decides which MX hosts, and verified TLS for them.
            plan = yield self.sts.plan(destination, hosts)
            hosts = plan.hosts
            if not hosts:
                raise plan.noHost()
        errors = []
        tried = 0
        for host in hosts:
            for ip in host.addresses:
                if tried >= MAX_ADDRESSES:
                    break
                tried += 1
                hostMode = plan.tlsMode(host, mode) if plan is not None else mode
                try:
                    session = yield self.open(host.name, ip, port, hostMode, auth)
                    if plan is not None:
                        plan.succeeded(host.name, ip, hostMode, session.machine.tlsActive,
                                       getattr(session, "localAddress", None))
                    return session
                except DeliveryError as e:
                    if plan is not None:
                        plan.failed(host.name, ip, hostMode, e)
                        if plan.fallBack(hostMode, e):  # testing mode: reported; deliver as before
                            hostMode = mode
                            try:
                                session = yield self.open(host.name, ip, port, mode, auth)
                                return session
                            except DeliveryError as again:
                                e = again
                    if getattr(e, "tlsFailed", False) and hostMode == "opportunistic":
                        log.info("relay: TLS with {host}[{ip}] failed ({e}); trying again without STARTTLS", host=host.name, ip=ip, e=e)
                        try:
                            session = yield self.open(host.name, ip, port, "none", auth)
                            return session
                        except DeliveryError as again:
                            e = again
                    log.info("relay: {host}[{ip}]:{port} unusable: {e}", host=host.name, ip=ip, port=port, e=e)
                    if e.permanent:
                        e = DeliveryError(e.code, e.enhanced, f"{host.name} refused to talk to us: {e.message}", True, e.remote)
                    errors.append(e)
        raise errors[-1] if errors else DeliveryError(451, "4.4.4", f"no address to try for {destination}", True)

    @defer.inlineCallbacks
    def open(self, name, ip, port, mode, auth=None):
        """Connect to one address and set the session up (greeting, EHLO, TLS, AUTH)."""
        relay = self.config.relay
        version = ipaddress.ip_address(ip).version
        endpointClass = endpoints.TCP6ClientEndpoint if version == 6 else endpoints.TCP4ClientEndpoint
        endpoint = endpointClass(self.reactor, ip, port, timeout=relay.connect_timeout)
        tlsOptions = None
        if mode == "implicit":
            endpoint = endpoints.wrapClientTLS(self.verifiedOptions(name), endpoint)
        elif mode == "required":
            tlsOptions = self.verifiedOptions(name)
        elif mode == "opportunistic":
            tlsOptions = self.opportunisticOptions()
        machine = ClientMachine(self.config.server.hostname, tls=mode, auth=auth, plainAuth=isLoopback(ip), remote=name)
        label = f"{name}[{ip}]:{port}"
        proto = SMTPClientProtocol(machine, self.reactor, tlsOptions=tlsOptions, replyTimeout=relay.reply_timeout,
                                   dataTimeout=relay.data_timeout, host=label)
        try:
            yield endpoint.connect(ClientFactory(lambda: proto))
        except ierror.ConnectionRefusedError:
            raise DeliveryError(451, "4.4.1", f"connect to {label}: connection refused", True)
        except (ierror.TimeoutError, defer.TimeoutError):
            raise DeliveryError(451, "4.4.1", f"connect to {label}: timed out", True)
        except Exception as e:
            raise DeliveryError(451, "4.4.1", f"connect to {label}: {e}", True)
        try:
            session = yield proto.ready
        except DeliveryError as e:
            if proto.localAddress and not getattr(e, "sendingIp", None):
                e.sendingIp = proto.localAddress  # RFC 8460 s4.3 sending-mta-ip, for TLS-RPT
            raise
        return session
