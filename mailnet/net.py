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

    def __init__(self, factory, maxTotal, maxPerIP, refusal=b"", name=None):
        self.name = name or factory.__class__.__name__
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
            return _Refuse(self.refusal)
        proto = self.factory.buildProtocol(addr)
        if proto is None:
            return None
        self.total += 1
        self.perIP[ip] = self.perIP.get(ip, 0) + 1
        original = proto.connectionLost

        def connectionLost(reason, _original=original):
            self.total -= 1
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
