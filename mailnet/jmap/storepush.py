"""
Push from the store (RFC 8620 s7): an :class:`~mailnet.jmap.push.IPushSource`
whose events are the store's account changes (``IAccount.addListener``,
``IAccountListener.accountChanged(account, state, types)``).  Each change
becomes ``{accountId: {Type: state}}`` for the types the store names
(Email, Mailbox, Thread), told to every EventSource and WebSocket
subscriber of that user; the store tells after the change is durable.
One store listener per user with subscribers, removed with the last one.

:meth:`StorePushSource.subscribeOwn` tells only the changes this process
made itself (the store's optional ``ownChange``, IAccountListener): what a
PushSubscription is POSTed, so that with several nodes on one database
each change is pushed once, by the node that made it (docs/scaling.md).
"""

from __future__ import annotations

from zope.interface import implementer

from mailnet.jmap.core import accountIdFor
from mailnet.jmap.push import IPushSource
from mailnet.logs import Logger
from mailnet.store.interfaces import IAccountListener

log = Logger()


@implementer(IAccountListener)
class _UserListener:
    def __init__(self, source, key):
        self.source = source
        self.key = key
        self.callbacks = []
        self.ownCallbacks = []  # subscribeOwn's
        self.account = None
        self.closed = False

    def _changed(self, state, types):
        changed = {accountIdFor(self.key): {t: state for t in sorted(types)}}
        if "Email" in types:
            # RFC 8621 s1.5: EmailDelivery, for clients that only want to hear of new mail.
            changed[accountIdFor(self.key)]["EmailDelivery"] = state
        return changed

    def _tell(self, callbacks, changed):
        for callback in list(callbacks):
            try:
                callback(changed)
            except Exception:
                log.failure("jmap push: a subscriber failed")

    def accountChanged(self, account, state, types):
        if self.callbacks:
            self._tell(self.callbacks, self._changed(state, types))

    def ownChange(self, account, state, types):
        if self.ownCallbacks:
            self._tell(self.ownCallbacks, self._changed(state, types))


@implementer(IPushSource)
class StorePushSource:
    def __init__(self, store):
        self.store = store
        self.users = {}  # lower-cased username -> _UserListener

    def subscribe(self, username, callback):
        return self._subscribe(username, callback, "callbacks")

    def subscribeOwn(self, username, callback):
        """As :meth:`subscribe`, but only the changes this process made (see the module docstring)."""
        return self._subscribe(username, callback, "ownCallbacks")

    def _subscribe(self, username, callback, kind):
        key = username.lower()
        listener = self.users.get(key)
        if listener is None:
            listener = self.users[key] = _UserListener(self, key)
            d = self.store.getAccount(username)

            def attach(account):
                if listener.closed:
                    return
                listener.account = account
                add = getattr(account, "addListener", None)
                if add is not None:
                    add(listener)

            d.addCallback(attach)
            d.addErrback(lambda failure: log.failure("jmap push: cannot watch an account", failure))
        callbacks = getattr(listener, kind)
        callbacks.append(callback)

        def unsubscribe():
            if callback in callbacks:
                callbacks.remove(callback)
            if not listener.callbacks and not listener.ownCallbacks and self.users.get(key) is listener:
                del self.users[key]
                listener.closed = True
                remove = getattr(listener.account, "removeListener", None)
                if remove is not None:
                    remove(listener)

        return unsubscribe

    async def currentStates(self, username):
        """Every type's state of the user's account (one account state for all, docs/jmap.md)."""
        account = await self.store.getAccount(username)
        currentState = getattr(account, "currentState", None)
        if currentState is None:
            return {}
        state = await currentState()
        return {accountIdFor(username.lower()): {t: state for t in ("Email", "EmailDelivery", "Mailbox", "Thread")}}

    def count(self, username=None) -> int:
        if username is None:
            return sum(len(u.callbacks) for u in self.users.values())
        user = self.users.get(username.lower())
        return len(user.callbacks) if user else 0
