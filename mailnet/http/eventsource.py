"""
Push over EventSource (RFC 8620 s7.3): ``GET eventSourceUrl`` keeps the
response open and writes a ``state`` event for each change of the user's
accounts (from an :class:`~mailnet.jmap.push.IPushSource`), ``ping``
events on the asked interval, and ends after the first ``state`` event
with ``closeafter=state``.  Each ``state`` event has an ``id``, the
pushState (RFC 8620 s7.1) of every state the stream has told (a type
never told is taken as changed at a resume, which costs the client one
``/changes`` with nothing in it); a client
that reconnects with it in ``Last-Event-ID`` gets at once a ``state``
event for what changed since (everything, for an id it did not get from
us), so nothing is missed while it was away.
"""

from __future__ import annotations

import urllib.parse

from twisted.internet import defer
from twisted.web import server

from mailnet.http.site import allowMethods, notFound, problem
from mailnet.jmap import core
from mailnet.jmap.push import EventSourceArguments, eventPing, eventStateChange, pushStateOf, resume
from mailnet.logs import Logger

log = Logger()


class EventSource:
    """
    @param jmap: the :class:`~mailnet.http.api.JMAPResource` (authentication).
    @param source: the :class:`~mailnet.jmap.push.IPushSource`.
    """

    def __init__(self, jmap, source, clock, pingMinimum, perUser):
        self.jmap = jmap
        self.source = source
        self.clock = clock
        self.pingMinimum = pingMinimum
        self.perUser = perUser
        self.open = {}  # username -> open streams

    def routes(self):
        return {core.EVENTSOURCE_PATH.encode(): self.render}

    def render(self, request, rest):
        if rest:
            notFound(request)
            return server.NOT_DONE_YET
        if not allowMethods(request, b"GET"):
            return server.NOT_DONE_YET
        query = urllib.parse.parse_qs(request.uri.partition(b"?")[2].decode("latin-1"), keep_blank_values=True)
        try:
            arguments = EventSourceArguments.parse(query, self.pingMinimum)
        except ValueError as e:
            problem(request, 400, "about:blank", str(e))
            return server.NOT_DONE_YET
        return self.jmap.serve(request, self._stream, arguments)

    async def _stream(self, request, principal, arguments):
        key = principal.username.lower()
        if self.open.get(key, 0) >= self.perUser:
            problem(request, 429, "about:blank", f"At most {self.perUser} event streams per user.")
            return
        self.open[key] = self.open.get(key, 0) + 1
        principal.kept = True  # logged out when the stream ends
        closed = self._closed(key)

        def onClose():
            closed()
            principal.done()

        stream = Stream(request, arguments, self.source, principal.username, self.clock, onClose)
        stream.start()
        currentStates = getattr(self.source, "currentStates", None)
        lastEventId = request.getHeader(b"last-event-id")
        if currentStates is None or lastEventId is None:
            return  # a new client asks /changes itself; the pushState holds what the stream told
        try:
            current = await defer.maybeDeferred(currentStates, principal.username)
        except Exception:
            log.failure("jmap push: the current states could not be read")
            return
        stream.baseline(current, lastEventId.decode("utf-8", "replace"))

    def _closed(self, key):
        def closed():
            left = self.open.get(key, 1) - 1
            if left > 0:
                self.open[key] = left
            else:
                self.open.pop(key, None)
        return closed


class Stream:
    """One open event stream."""

    def __init__(self, request, arguments, source, username, clock, onClose):
        self.request = request
        self.arguments = arguments
        self.clock = clock
        self.onClose = onClose
        self.timer = None
        self.done = False
        self.unsubscribe = source.subscribe(username, self.changed)
        self.eventCount = 0
        self.states = {}  # {accountId: {Type: state}} told (and current at a resume): the pushState

    def start(self):
        request = self.request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache, no-store")
        request.setHeader(b"x-accel-buffering", b"no")  # proxies: do not hold events back
        request.notifyFinish().addBoth(self.finished)
        request.write(b": mailnet push\n\n")  # the headers go out now
        self._arm()

    def _arm(self):
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.arguments.ping and not self.done:
            self.timer = self.clock.callLater(self.arguments.ping, self.ping)

    def ping(self):
        self.timer = None
        if self.done:
            return
        # RFC 8620 s7.3: a ping whenever the interval passes without an event.
        self.request.write(eventPing(self.arguments.ping))
        self._arm()

    def baseline(self, current, lastEventId):
        """
        The states when the stream began (what the pushState starts from);
        with ``lastEventId`` (RFC 8620 s7.3 resume), a ``state`` event now
        for each state that differs from the ones that id carries.
        """
        if self.done:
            return
        missed = resume(self.arguments.filter(current), self.states, lastEventId)
        if missed:
            self.changed(missed)

    def changed(self, changed):
        if self.done:
            return
        changed = self.arguments.filter(changed)
        if not changed:
            return
        self.eventCount += 1
        for accountId, types in changed.items():
            self.states.setdefault(accountId, {}).update(types)
        self.request.write(eventStateChange(changed, pushStateOf(self.states)))
        if self.arguments.closeAfterState:
            self.close()
            return
        self._arm()

    def close(self):
        if not self.done:
            self.request.finish()

    def finished(self, result):
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.unsubscribe()
        self.onClose()
