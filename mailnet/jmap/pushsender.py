"""
Delivery of RFC 8620 s7.2 push (the effect runner of PushSubscription):
PushVerification and StateChange objects POSTed to each subscription's
URL, as a Web Push application server does (RFC 8030 s5: ``TTL`` and
``Urgency`` headers; RFC 8291 encryption when the subscription has keys).
No I/O of its own: ``post(url, headers, body)`` (mailnet/http/pushclient.py
on the server) gives (a Deferred of) the HTTP status, or fails.

* Coalesced: changes of a user within ``coalesce`` seconds are one
  StateChange per subscription (the newest state of each type); a change
  while one is in flight waits for it and goes next.
* Retried: a failure (no answer, or a status other than 2xx, 404 and 410)
  is retried after ``backoff`` seconds, doubled each time up to
  ``maxBackoff``, the changes of meanwhile merged in; after ``attempts``
  failures in a row the subscription is dropped (taken out of the user's
  document, durably) and logged.  404 and 410 (RFC 8030 s7.3: the push
  subscription is gone) drop it at once.
* Only verified subscriptions (the client set the verificationCode) that
  have not expired get StateChanges; the verification itself is sent
  (and retried the same way) right after the subscription is created.
* The subscriptions come from the users' documents
  (:meth:`load` at start, :meth:`changed` after every /set), so they
  outlive a restart; a push source subscription (:class:`IPushSource`) is
  held per user with at least one subscription.
* Several nodes on one database (docs/scaling.md): the documents are
  shared; :meth:`reload` reads a user's again when another node changed it
  (its NOTIFY), :meth:`resync` every user's after notifications may have
  been lost.  Only the changes this process made are pushed (the source's
  ``subscribeOwn``), so each change is POSTed once, by the node that made
  it; retries and failure counts are each node's own.
"""

from __future__ import annotations

import inspect
import json

from mailnet.jmap import pushsubscription as model
from mailnet.jmap import webpush
from mailnet.jmap.push import pushStateOf, stateChange
from mailnet.logs import Logger

log = Logger()


class _Sub:
    def __init__(self, username, stored):
        self.username = username
        self.id = stored["id"]
        self.pending = {}  # accountId -> {Type: state}: what the next StateChange carries
        self.verification = None  # True while the PushVerification is still to be sent
        self.update(stored)
        self.failures = 0
        self.timer = None
        self.inflight = False
        self.gone = False

    def update(self, stored):
        self.url = stored["url"]
        self.keys = stored.get("keys")
        self.types = stored.get("types")
        self.expires = stored.get("expires")
        self.verified = bool(stored.get("verified"))
        if self.verified:
            self.verification = None  # the client has the code: a retry of the verification is moot


async def _value(v):
    if inspect.isawaitable(v):
        return await v
    return v


def _merge(into, changed):
    for accountId, types in changed.items():
        into.setdefault(accountId, {}).update(types)


class PushSender:
    """
    @param post: ``post(url, headers, body)`` -> (a Deferred of) the status.
    @param clock: ``callLater``/``seconds``.
    @param source: the :class:`~mailnet.jmap.push.IPushSource` of account changes.
    @param userData: the :class:`~mailnet.jmap.identity.IUserData` holding the documents.
    @param runner: runs a coroutine (``defer.ensureDeferred`` on the server).
    """

    def __init__(self, post, clock, source, userData, runner, *, ttl=86400, coalesce=1.0, attempts=5,
                 backoff=10.0, maxBackoff=600.0, perUser=10, maxExpires=7 * 86400, allowedPrefixes=()):
        self.post = post
        self.clock = clock
        self.source = source
        self.userData = userData
        self.runner = runner
        self.ttl = ttl
        self.coalesce = coalesce
        self.attempts = attempts
        self.backoff = backoff
        self.maxBackoff = maxBackoff
        self.perUser = perUser
        self.maxExpires = maxExpires
        self.allowedPrefixes = tuple(allowedPrefixes)
        self.subs = {}  # username -> {id: _Sub}
        self.listening = {}  # username -> unsubscribe callable
        self.rereading = {}  # username -> True: read the document again (a read is running)

    # what the subscriptions are

    def load(self, docs):
        """At start: ``[(username, doc)]`` of every user's document."""
        for username, doc in docs:
            if model.validDoc(doc):
                self.changed(username, doc)
        return sum(map(len, self.subs.values()))

    def changed(self, username, doc):
        """The user's document now (after a /set, or at start): subscriptions added, changed, gone."""
        key = username.lower()
        if key in self.rereading:
            self.rereading[key] = True  # a read of before this write is running: its answer is not the newest
        self._apply(key, doc)

    def reload(self, username):
        """
        Another node changed the user's document: read it again.  An answer
        is taken only when nothing changed while it was read (else it is
        read again), so the last one taken is never older than a write
        already seen.
        """
        key = username.lower()
        if key in self.rereading:
            self.rereading[key] = True
            return
        self.rereading[key] = True
        self.runner(self._reread(key))

    async def _reread(self, key):
        try:
            while self.rereading.get(key):
                self.rereading[key] = False
                doc = await _value(self.userData.load(key, model.DATA))
                if not self.rereading.get(key):
                    self._apply(key, doc)
        finally:
            self.rereading.pop(key, None)

    def resync(self):
        """Notifications of other nodes' changes may have been lost: every user's document is read again."""

        async def go():
            docs = await _value(self.userData.loadAll(model.DATA))
            for username in set(self.subs) | {u.lower() for u, _ in docs}:
                self.reload(username)

        self.runner(go())

    def _apply(self, key, doc):
        mine = self.subs.setdefault(key, {})
        stored = doc.get("subscriptions", {}) if model.validDoc(doc) else {}
        for i in [i for i in mine if i not in stored]:
            self._forget(mine.pop(i))
        for i, record in stored.items():
            if i in mine:
                mine[i].update(record)
            else:
                mine[i] = _Sub(key, record)
        if not mine:
            del self.subs[key]
        self._listen(key)

    def _listen(self, key):
        # From the create on, not only once verified: the store's first look
        # at a new account is its silent baseline, and it should be taken
        # before the client, verified, makes the first change it wants told.
        wanted = bool(self.subs.get(key))
        if wanted and key not in self.listening:
            # Only this process's own changes: another node pushes its own (the module docstring).
            subscribe = getattr(self.source, "subscribeOwn", self.source.subscribe)
            self.listening[key] = subscribe(key, lambda changed, key=key: self.accountChanged(key, changed))
        elif not wanted and key in self.listening:
            self.listening.pop(key)()

    def _forget(self, sub):
        sub.gone = True
        if sub.timer is not None and sub.timer.active():
            sub.timer.cancel()
        sub.timer = None

    def count(self):
        return sum(map(len, self.subs.values()))

    # what is sent

    def verify(self, username, i):
        """s7.2.2: send the PushVerification of a new subscription."""
        sub = self.subs.get(username.lower(), {}).get(i)
        if sub is None:
            return
        sub.verification = True  # the code is read from the user's document when it is sent
        self._schedule(sub, 0)

    def accountChanged(self, username, changed):
        for sub in list(self.subs.get(username.lower(), {}).values()):
            if not sub.verified:
                continue
            wanted = changed if sub.types is None else {
                a: {t: s for t, s in types.items() if t in sub.types} for a, types in changed.items()}
            wanted = {a: t for a, t in wanted.items() if t}
            if not wanted:
                continue
            _merge(sub.pending, wanted)
            if sub.timer is None and not sub.inflight:
                self._schedule(sub, self.coalesce)

    def _schedule(self, sub, delay):
        if sub.gone or sub.timer is not None:
            return

        def due():
            sub.timer = None
            self.runner(self._deliver(sub))

        sub.timer = self.clock.callLater(delay, due)

    def _expired(self, sub):
        return sub.expires is not None and sub.expires <= self.clock.seconds()

    async def _message(self, sub):
        """(kind, object) of the next POST, or None."""
        if sub.verification:
            doc = await _value(self.userData.load(sub.username, model.DATA))
            stored = (doc or {}).get("subscriptions", {}).get(sub.id) if model.validDoc(doc) else None
            if stored is None:
                return None
            return "verification", {"@type": "PushVerification", "pushSubscriptionId": sub.id,
                                    "verificationCode": stored["code"]}
        if sub.pending and sub.verified:
            return "state", stateChange(sub.pending, pushStateOf(sub.pending))
        return None

    async def _deliver(self, sub):
        if sub.gone or sub.inflight:
            return
        if self._expired(sub):
            # s7.2: no request after expires; the subscription goes.
            await self._drop(sub, "expired")
            return
        message = await self._message(sub)
        if message is None:
            return
        kind, body = message
        sent = dict(sub.pending) if kind == "state" else None
        if kind == "state":
            sub.pending = {}
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        # RFC 8030 s5.2 TTL (required), s5.3 Urgency; RFC 8620 s7.2: application/json.
        headers = {"Content-Type": "application/json", "TTL": str(self.ttl),
                   "Urgency": "high" if kind == "verification" else "normal"}
        if sub.keys:
            # RFC 8291: the body is encrypted for the client (aes128gcm, RFC 8188).
            p256dh, auth = webpush.checkKeys(sub.keys)
            data = webpush.encrypt(data, p256dh, auth)
            headers["Content-Encoding"] = "aes128gcm"
        sub.inflight = True
        try:
            status = await _value(self.post(sub.url, headers, data))
            why = None if 200 <= status < 300 else f"HTTP {status}"
        except Exception as e:
            status, why = None, type(e).__name__
        finally:
            sub.inflight = False
        if sub.gone:
            return
        if why is None:
            sub.failures = 0
            if kind == "verification":
                sub.verification = None
            if sub.pending:
                self._schedule(sub, self.coalesce)
            return
        if status in (404, 410):
            # RFC 8030 s7.3: the push service says the subscription is gone.
            await self._drop(sub, why)
            return
        if sent:
            newer, sub.pending = sub.pending, sent
            _merge(sub.pending, newer)
        sub.failures += 1
        if sub.failures >= self.attempts:
            await self._drop(sub, f"{sub.failures} failures, the last {why}")
            return
        delay = min(self.maxBackoff, self.backoff * 2 ** (sub.failures - 1))
        log.info("jmap push: subscription {id} of {user}: {why}; retry in {delay}s", id=sub.id, user=sub.username,
                 why=why, delay=int(delay))
        self._schedule(sub, delay)

    async def _drop(self, sub, why):
        """Take a subscription out for good: from memory, then from the user's document."""
        log.info("jmap push: subscription {id} of {user} dropped: {why}", id=sub.id, user=sub.username, why=why)
        mine = self.subs.get(sub.username, {})
        mine.pop(sub.id, None)
        self._forget(sub)
        if not mine:
            self.subs.pop(sub.username, None)
        self._listen(sub.username)

        def change(old):
            doc = old if model.validDoc(old) else model.emptyDoc(sub.username)
            doc["subscriptions"].pop(sub.id, None)
            return doc

        try:
            doc = await _value(self.userData.update(sub.username, model.DATA, change))
            self.changed(sub.username, doc)  # after a read of another node's change that was running
        except Exception as e:
            log.error("jmap push: a dropped subscription could not be written: {why}", why=str(e)[:200])
