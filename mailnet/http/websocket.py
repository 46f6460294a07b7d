"""
JMAP over WebSocket (RFC 8887) on twisted.web: ``GET /jmap/ws/`` with the
``jmap`` subprotocol, authenticated like every request, then JMAP requests
and push over the one socket.  The messages are :mod:`mailnet.jmap.websocket`
(pure); the frames are wsproto's, through Twisted's websocket support.

Requests on one socket are answered one at a time, in order; a message
larger than maxSizeRequest closes the socket with 1009 (RFC 6455 s7.4.1);
binary messages close it with 1003 (RFC 8887 s4: JMAP messages are text).
"""

from __future__ import annotations

import h11
from twisted.internet import defer
from twisted.web import server
from twisted.web._websocket_impl import _WebSocketWireProtocol, serverBootstrap
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from mailnet.http.api import HTTPError
from mailnet.http.site import allowMethods, notFound
from mailnet.jmap import websocket as messages
from mailnet.jmap.push import EventSourceArguments, pushStateOf, resume
from mailnet.logs import Logger

log = Logger()

CLOSE_TOO_BIG = 1009
CLOSE_UNSUPPORTED = 1003


class WebSocketEndpoint:
    def __init__(self, jmap, source):
        self.jmap = jmap
        self.source = source

    def routes(self):
        return {messages.PATH.encode(): self.render}

    def render(self, request, rest):
        if rest:
            notFound(request)
            return server.NOT_DONE_YET
        if not allowMethods(request, b"GET"):
            return server.NOT_DONE_YET
        return self.jmap.serve(request, self._upgrade)

    async def _upgrade(self, request, principal):
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [(name, value) for name, values in request.requestHeaders.getAllRawHeaders() for value in values]
        try:
            handshake.initiate_upgrade_connection(headers, request.path)
        # h11 also refuses a request without Host; wsproto decodes Host with idna (UnicodeError on bad bytes).
        except (RemoteProtocolError, h11.ProtocolError, UnicodeError):
            raise HTTPError(400, "Not a WebSocket handshake.")
        header = request.getHeader(b"sec-websocket-protocol") or b""
        wanted = [p.strip() for p in header.decode("latin-1").split(",")]
        if messages.SUBPROTOCOL not in wanted:
            # RFC 8887 s4.1: the client MUST ask for the "jmap" subprotocol.
            raise HTTPError(400, 'The "jmap" WebSocket subprotocol is required.')
        principal.kept = True  # logged out when the socket closes
        socket = JMAPSocket(self.jmap, self.source, principal, self.jmap.base(request))
        toSend = handshake.send(AcceptConnection(subprotocol=messages.SUBPROTOCOL))
        channel = request.channel
        wire = _WebSocketWireProtocol(handshake.connection, serverBootstrap, socket)
        socket.bounded = bounded = _Bounded(wire, socket, self.jmap.limits.maxSizeRequest + 1024)
        original = channel.connectionLost  # the listener's connection accounting is chained here
        early = b"".join(channel._dataBuffer)  # sent before our 101: not expected, kept anyway
        channel._dataBuffer = []
        channel._protocolUpgradeForWebsockets(bounded)
        channel.connectionLost = lambda reason: (bounded.connectionLost(reason), original(reason))
        channel.transport.write(toSend)
        channel._networkProducer.resumeProducing()
        socket.negotiationFinished()
        if early:
            bounded.dataReceived(early)
        log.info("jmap: {user} opened a WebSocket", user=principal.username)


class _Bounded:
    """The wire protocol with a cap on the bytes of one message (wsproto has none)."""

    def __init__(self, wire, socket, limit):
        self.wire = wire
        self.socket = socket
        self.limit = limit
        self.pending = 0

    def makeConnection(self, transport):
        self.wire.makeConnection(transport)

    def dataReceived(self, data):
        if self.socket.closed:
            return
        self.pending += len(data)
        if self.pending > self.limit:
            self.socket.close(CLOSE_TOO_BIG)
            return
        self.wire.dataReceived(data)

    def connectionLost(self, reason):
        self.wire.connectionLost(reason)


class JMAPSocket:
    """One JMAP WebSocket (Twisted's WebSocketProtocol)."""

    def __init__(self, jmap, source, principal, base):
        self.jmap = jmap
        self.source = source
        self.principal = principal
        self.base = base
        self.transport = None
        self.closed = False
        self.lock = defer.DeferredLock()
        self.unsubscribe = None
        self.push = None  # the types filter while push is on
        self.bounded = None

    # WebSocketProtocol

    def negotiationStarted(self, transport):
        self.transport = transport

    def negotiationFinished(self):
        pass

    def pongReceived(self, payload):
        pass

    def textMessageReceived(self, message):
        if self.bounded is not None:
            self.bounded.pending = 0
        self.lock.run(lambda: defer.ensureDeferred(self._handle(message))).addErrback(self._failed)

    def bytesMessageReceived(self, data):
        self.close(CLOSE_UNSUPPORTED)

    def connectionLost(self, reason):
        self.closed = True
        self._stopPush()
        self.principal.done()

    # Messages

    async def _handle(self, text):
        if self.closed:
            return
        limits = self.jmap.limits
        try:
            message = messages.parseMessage(text, self.jmap.registry.capabilities, limits.maxCallsInRequest)
        except messages.MessageError as e:
            self._send(messages.encodeError(e))
            return
        if isinstance(message, messages.PushEnable):
            self._startPush(message)
        elif isinstance(message, messages.PushDisable):
            self._stopPush()
        else:
            response = await self.jmap.answer(self.principal, message.request, self.base)
            self._send(messages.encodeResponse(response, message.id))

    def _startPush(self, message):
        self._stopPush()
        self.push = EventSourceArguments(message.dataTypes, False, 0)
        self.pushStates = {}  # what this push told: the pushState (RFC 8620 s7.1)
        self.unsubscribe = self.source.subscribe(self.principal.username, self._changed)
        currentStates = getattr(self.source, "currentStates", None)
        if message.pushState is not None and currentStates is not None:
            # RFC 8887 s4.3.5.1: with a pushState, the changes since it are sent at once.
            push = self.push
            d = defer.maybeDeferred(currentStates, self.principal.username)
            d.addCallback(lambda current: self._resumed(push, current, message.pushState))
            d.addErrback(lambda failure: log.failure("jmap push: the current states could not be read", failure))

    def _resumed(self, push, current, pushState):
        if self.push is not push or self.closed:
            return  # disabled or enabled again meanwhile
        missed = resume(push.filter(current), self.pushStates, pushState)
        if missed:
            self._send(messages.encodeStateChange(missed, pushStateOf(self.pushStates)))

    def _stopPush(self):
        if self.unsubscribe is not None:
            self.unsubscribe()
        self.unsubscribe = None
        self.push = None

    def _changed(self, changed):
        if self.push is None or self.closed:
            return
        changed = self.push.filter(changed)
        if changed:
            for accountId, types in changed.items():
                self.pushStates.setdefault(accountId, {}).update(types)
            self._send(messages.encodeStateChange(changed, pushStateOf(self.pushStates)))

    def _send(self, text):
        if not self.closed and self.transport is not None:
            self.transport.sendTextMessage(text)

    def close(self, code):
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.loseConnection(code)

    def _failed(self, failure):
        log.failure("jmap: WebSocket request of {user} failed", failure, user=self.principal.username)
        self.close(1011)
