"""
Push (RFC 8620 s7): the StateChange object, the EventSource query
arguments, and the interface a source of account changes offers.  Pure.

The store will tell of account changes ("account changed, new state S",
issue 13's account listener); one adapter turns that into an
:class:`IPushSource`.  :class:`MemoryPushSource` is the one the tests (and
an embedding application) publish into.
"""

from __future__ import annotations

import base64
import binascii
import json

from zope.interface import Interface, implementer


class IPushSource(Interface):
    def subscribe(username, callback):
        """
        Call ``callback(changed)`` whenever an account of ``username``
        changes, where ``changed`` is ``{accountId: {TypeName: state}}``
        (RFC 8620 s7.1 TypeState).  Returns a callable that unsubscribes.
        """

    # Optional: subscribeOwn(username, callback), as subscribe but told
    # only of the changes this process made itself (with several nodes,
    # not another node's): what PushSubscriptions are POSTed
    # (mailnet/jmap/storepush.py).  Without it, subscribe is used.

    def currentStates(username):
        """
        Optional: every account of ``username`` with the state of each type
        (``{accountId: {TypeName: state}}``), or a Deferred firing with it:
        what an EventSource that resumes (``Last-Event-ID``) is sent at once.
        """


@implementer(IPushSource)
class MemoryPushSource:
    """Subscribers per user in memory; :meth:`publish` tells them."""

    def __init__(self):
        self.subscribers: dict[str, list] = {}
        self.states: dict[str, dict] = {}  # username -> every state published

    def currentStates(self, username):
        return {a: dict(t) for a, t in self.states.get(username.lower(), {}).items()}

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

    subscribeOwn = subscribe  # one process: every change published is its own

    def publish(self, username, changed: dict):
        states = self.states.setdefault(username.lower(), {})
        for accountId, types in changed.items():
            states.setdefault(accountId, {}).update(types)
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


def stateChange(changed: dict, pushState=None) -> dict:
    """RFC 8620 s7.1 StateChange (``pushState`` when given)."""
    out = {"@type": "StateChange", "changed": changed}
    if pushState is not None:
        out["pushState"] = pushState
    return out


def eventStateChange(changed: dict, eventId=None) -> bytes:
    """
    An EventSource ``state`` event (RFC 8620 s7.3) carrying a StateChange;
    ``eventId`` (the pushState) is the event's ``id`` and the StateChange's
    ``pushState``, which a client resuming sends back as ``Last-Event-ID``.
    """
    lines = []
    if eventId is not None:
        lines.append(f"id: {eventId}")
    lines.append("event: state")
    lines.append("data: " + json.dumps(stateChange(changed, eventId), separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def pushStateOf(states: dict) -> str:
    """
    RFC 8620 s7.1 pushState: every state the client has been told,
    ``{accountId: {Type: state}}``, as one opaque string (base64url of
    compact JSON: no new line, no colon, so it is a valid event id).
    """
    data = json.dumps(states, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


MAX_PUSH_STATE = 8192  # characters of a Last-Event-ID looked at


def parsePushState(text) -> dict | None:
    """:func:`pushStateOf` back, or None for anything else (an old server's id, garbage)."""
    if not isinstance(text, str) or not text or len(text) > MAX_PUSH_STATE:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(value, dict) or not all(
            isinstance(a, str) and isinstance(t, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                               for k, v in t.items())
            for a, t in value.items()):
        return None
    return value


def eventPing(interval: int) -> bytes:
    """RFC 8620 s7.3: a ``ping`` event, data ``{"interval": N}``, no new id."""
    return f"event: ping\ndata: {{\"interval\":{interval}}}\n\n".encode("ascii")


def resume(current: dict, told: dict, lastPushState) -> dict:
    """
    A client resumes (EventSource ``Last-Event-ID``, RFC 8887
    ``WebSocketPushEnable.pushState``): ``current`` is every state now;
    each is added to ``told`` (the stream's states, which an event since
    the subscription may already have newer) and returned when it differs
    from what ``lastPushState`` carries (everything for an id that is not
    one of ours).
    """
    known = parsePushState(lastPushState) or {}
    missed = {}
    for accountId, types in current.items():
        mine = told.setdefault(accountId, {})
        for name, state in types.items():
            mine.setdefault(name, state)
            if known.get(accountId, {}).get(name) != mine[name]:
                missed.setdefault(accountId, {})[name] = mine[name]
    return missed
