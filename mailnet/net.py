"""
Listener plumbing shared by every protocol: connection limits (in total and
per client address) and implicit TLS.
"""

from __future__ import annotations

from twisted.internet import protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from mailnet.logs import Logger

log = Logger()


class _Refuse(protocol.Protocol):
    def __init__(self, message):
        self.message = message

    def connectionMade(self):
        if self.message:
            self.transport.write(self.message)
        self.transport.loseConnection()


def peerHost(transport) -> str:
    """The client's address as a string ("127.0.0.1", "::1", "unix")."""
    peer = transport.getPeer()
    return getattr(peer, "host", None) or "unix"


class LimitedFactory(protocol.Factory):
    """
    Wrap a protocol factory with limits on open connections, in total and
    per client address.  Over a limit, the client gets ``refusal`` (the
    protocol's own "too many connections" line, e.g. SMTP ``421 4.7.0 ...``)
    and is disconnected.

    The wrapped factory's protocols are returned unwrapped; their
    ``connectionLost`` is chained to release the slot.
    """

    noisy = False

    def __init__(self, factory, maxTotal, maxPerIP, refusal=b"", name=None, metrics=None):
        self.name = name or factory.__class__.__name__
        if metrics is None:
            from mailnet.metrics import DISCARD as metrics
        self.opened = metrics.connectionsOpened.labels(listener=self.name)
        self.refused = metrics.connectionsRefused.labels(listener=self.name)
        self.open = metrics.sessionsOpen.labels(listener=self.name)
        self.factory = factory
        self.maxTotal = maxTotal
        self.maxPerIP = maxPerIP
        self.refusal = refusal
        self.total = 0
        self.perIP: dict[str, int] = {}

    def logPrefix(self):
        """Names the listener in Twisted's "<prefix> starting on <port>" line."""
        return f"mailnet {self.name}"

    def doStart(self):
        self.factory.doStart()

    def doStop(self):
        self.factory.doStop()

    def buildProtocol(self, addr):
        ip = getattr(addr, "host", None) or "unix"
        if self.total >= self.maxTotal or self.perIP.get(ip, 0) >= self.maxPerIP:
            log.info("refused a connection from {ip}: too many connections", ip=ip)
            self.refused.inc()
            return _Refuse(self.refusal)
        proto = self.factory.buildProtocol(addr)
        if proto is None:
            return None
        self.total += 1
        self.perIP[ip] = self.perIP.get(ip, 0) + 1
        self.opened.inc()
        self.open.inc()
        original = proto.connectionLost

        def connectionLost(reason, _original=original):
            self.total -= 1
            self.open.dec()
            left = self.perIP.get(ip, 1) - 1
            if left:
                self.perIP[ip] = left
            else:
                self.perIP.pop(ip, None)
            return _original(reason)

        proto.connectionLost = connectionLost
        return proto


def implicitTLS(factory, contextFactory):
    """Serve ``factory`` behind TLS from the first byte (RFC 8314 ports)."""
    return TLSMemoryBIOFactory(contextFactory, False, factory)


def withBacklog(description, backlog):
    """
    ``description`` with ``backlog=N`` added (the kernel's queue of
    connections not yet accepted; Twisted's default of 50 overflows in a
    burst), unless it sets its own.
    """
    kind = description.split(":", 1)[0]
    if kind not in ("tcp", "tcp6", "unix") or "backlog=" in description:
        return description
    return f"{description}:backlog={backlog}"


def filesNeeded(config) -> int:
    """Open files the configured limits may need: every connection, plus the queue's and some to spare."""
    listeners = sum(1 for description in vars(config.listen).values() if description)
    return listeners * config.limits.connections + config.relay.max_connections + 256


def raiseFileLimit(need, resourceModule=None):
    """
    Raise ``RLIMIT_NOFILE`` to ``need`` (the soft limit up to the hard one;
    the hard one too if we may).  Returns (before, after), soft limits.
    """
    if resourceModule is None:
        import resource as resourceModule
    kind = resourceModule.RLIMIT_NOFILE
    soft, hard = resourceModule.getrlimit(kind)
    infinity = resourceModule.RLIM_INFINITY
    if soft == infinity or soft >= need:
        return soft, soft
    if hard != infinity and hard < need:
        try:
            resourceModule.setrlimit(kind, (need, need))  # works when privileged
            return soft, need
        except (ValueError, OSError):
            pass
    target = need if hard == infinity else min(need, hard)
    try:
        resourceModule.setrlimit(kind, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target
