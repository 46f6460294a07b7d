"""
Push (RFC 8620 s7): the StateChange object, the EventSource query
arguments, and the interface a source of account changes offers.  Pure.

The store will tell of account changes ("account changed, new state S",
issue 13's account listener); one adapter turns that into an
:class:`IPushSource`.  :class:`MemoryPushSource` is the one the tests (and
an embedding application) publish into.
"""

from __future__ import annotations

import json

from zope.interface import Interface, implementer


class IPushSource(Interface):
    def subscribe(username, callback):
        """
        Call ``callback(changed)`` whenever an account of ``username``
        changes, where ``changed`` is ``{accountId: {TypeName: state}}``
        (RFC 8620 s7.1 TypeState).  Returns a callable that unsubscribes.
        """


@implementer(IPushSource)
class MemoryPushSource:
    """Subscribers per user in memory; :meth:`publish` tells them."""

    def __init__(self):
        self.subscribers: dict[str, list] = {}

    def subscribe(self, username, callback):
        key = username.lower()
        self.subscribers.setdefault(key, []).append(callback)

        def unsubscribe():
            callbacks = self.subscribers.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self.subscribers.pop(key, None)

        return unsubscribe

    def publish(self, username, changed: dict):
        for callback in list(self.subscribers.get(username.lower(), ())):
            callback(changed)

    def count(self, username=None) -> int:
        if username is None:
            return sum(map(len, self.subscribers.values()))
        return len(self.subscribers.get(username.lower(), ()))


class EventSourceArguments:
    """
    The query of an eventSourceUrl (RFC 8620 s7.3): ``types`` (``*`` or
    type names), ``closeafter`` (``state`` or ``no``), ``ping`` (seconds, 0
    = none; held within [minimum, maximum]: s7.3 lets the server, with a
    minimum no higher than 30 and a maximum no lower than 300).
    """

    def __init__(self, types, closeAfterState, ping):
        self.types = types  # None = every type
        self.closeAfterState = closeAfterState
        self.ping = ping

    @classmethod
    def parse(cls, query: dict, minimumPing: int, maximumPing: int = 3600):
        """
        ``query``: name -> list of str values (as ``urllib.parse.parse_qs``).
        @raise ValueError: with the message for the client.
        """

        def one(name, default):
            values = query.get(name)
            if not values:
                return default
            if len(values) > 1:
                raise ValueError(f"{name} given more than once")
            return values[0]

        types = one("types", "*")
        if types == "*":
            names = None
        else:
            names = frozenset(t for t in types.split(",") if t)
            if not names or not all(t.replace("/", "").isalnum() for t in names):
                raise ValueError("types must be * or a comma-separated list of type names")
        closeafter = one("closeafter", "no")
        if closeafter not in ("state", "no"):
            raise ValueError("closeafter must be state or no")
        ping = one("ping", "0")
        if not ping.isdigit() or len(ping) > 9:
            raise ValueError("ping must be a non-negative integer")
        ping = int(ping)
        if ping:
            ping = min(max(ping, min(minimumPing, 30)), max(maximumPing, 300))
        return cls(names, closeafter == "state", ping)

    def filter(self, changed: dict) -> dict:
        """``changed`` cut to the wanted types (accounts with none left dropped)."""
        if self.types is None:
            return changed
        out = {}
        for accountId, states in changed.items():
            kept = {t: s for t, s in states.items() if t in self.types}
            if kept:
                out[accountId] = kept
        return out


def stateChange(changed: dict) -> dict:
    """RFC 8620 s7.1 StateChange."""
    return {"@type": "StateChange", "changed": changed}


def eventStateChange(changed: dict, eventId=None) -> bytes:
    """An EventSource ``state`` event (RFC 8620 s7.3) carrying a StateChange."""
    lines = []
    if eventId is not None:
        lines.append(f"id: {eventId}")
    lines.append("event: state")
    lines.append("data: " + json.dumps(stateChange(changed), separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def eventPing(interval: int) -> bytes:
    """RFC 8620 s7.3: a ``ping`` event, data ``{"interval": N}``, no new id."""
    return f"event: ping\ndata: {{\"interval\":{interval}}}\n\n".encode("ascii")
