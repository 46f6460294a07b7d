"""
RFC 8620 s7.2: PushSubscription, push to a URL of the client's (a Web Push
service, RFC 8030) when its accounts change.  Pure: the methods check
and shape; the subscriptions are a per-user document of an
:class:`~mailnet.jmap.identity.IUserData` (durable on the server), and the
deliveries are the :class:`~mailnet.jmap.pushsender.PushSender`'s
(``services["pushSender"]``), which this module tells of every change.

* ``PushSubscription/get`` and ``/set`` take no ``accountId`` and answer no
  state (s7.2.1, s7.2.2); ``url`` and ``keys`` are never returned, and
  asking for them is ``forbidden``.
* Created: the server POSTs a PushVerification with a random
  ``verificationCode`` to the URL; the subscription gets nothing else until
  the client sets that code with ``/set`` update (a wrong one is
  ``invalidProperties``).
* ``url`` must be ``https:`` and not name a loopback, private or
  link-local address (or start with a prefix of ``[jmap]
  push_allowed_prefixes``, for tests on loopback); ``keys`` (``p256dh`` and
  ``auth``, RFC 8291) make every message encrypted; ``expires`` is capped
  at ``[jmap] push_expires_max`` seconds ahead (and set to that when
  null), the capped value returned; ``types`` null = every type.
* At most ``[jmap] push_subscriptions_per_user`` per user (``overQuota``).
"""

from __future__ import annotations

import calendar
import ipaddress
import secrets
import time
import urllib.parse

from mailnet.jmap import standard, webpush
from mailnet.jmap.dispatch import CORE
from mailnet.jmap.errors import MethodError, SetError

DATA = "pushsubscriptions"  # the IUserData document
PROPERTIES = ("id", "deviceClientId", "url", "keys", "verificationCode", "expires", "types")
HIDDEN = ("url", "keys")  # s7.2.1: never returned
MAX_URL = 2048
MAX_DEVICE_ID = 255
MAX_TYPES = 50


def utcDate(seconds) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


def parseUTCDate(value):
    """RFC 8620 s1.4 UTCDate (``Z``, optional fraction) -> epoch seconds, or None."""
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        return None
    base = value[:-1].split(".")[0]
    try:
        return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def emptyDoc(username):
    return {"version": 1, "username": username.lower(), "subscriptions": {}}


def validDoc(doc):
    return isinstance(doc, dict) and doc.get("version") == 1 and isinstance(doc.get("subscriptions"), dict)


def public(stored: dict) -> dict:
    """A stored subscription as the client sees it (without the server's code until the client set it)."""
    return {"id": stored["id"], "deviceClientId": stored["deviceClientId"], "url": stored["url"],
            "keys": stored.get("keys"), "verificationCode": stored["code"] if stored.get("verified") else None,
            "expires": utcDate(stored["expires"]) if stored.get("expires") is not None else None,
            "types": stored.get("types")}


def checkURL(url, allowedPrefixes=()) -> str:
    """
    ``https:`` to a host that is not an address of this machine or a private
    network, or under a prefix of ``allowedPrefixes``; ValueError with the
    reason otherwise.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not url.isascii() or \
            any(c in url for c in " \r\n\t\x00"):
        raise ValueError(f"url must be an absolute URL of at most {MAX_URL} characters")
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must carry no user name or password")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("url must be https:")
    if any(url.startswith(p) for p in allowedPrefixes if p):
        return url
    if parts.scheme != "https":
        raise ValueError("url must be https:")
    if _local(parts.hostname):
        # The server makes the request: not to itself or its own network unless the operator allows it.
        raise ValueError("url must not name a loopback, private or link-local address")
    return url


def _local(host) -> bool:
    """A host that names this machine or a private network by itself (an address literal, localhost)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


class Subscriptions:
    """The PushSubscription methods of one call (the authenticated user's)."""

    def __init__(self, call):
        services = call.context.services
        self.call = call
        self.username = call.context.username
        self.sender = services.get("pushSender")
        self.data = services.get("userData")
        if self.sender is None or self.data is None:
            raise MethodError("forbidden", "push subscriptions are not set up on this server")
        self.now = self.sender.clock.seconds()

    async def doc(self):
        doc = await standard._call(self.data.load(self.username, DATA))
        return doc if validDoc(doc) else emptyDoc(self.username)

    async def records(self):
        """id -> stored subscription, expired ones left out (s7.2: no request after ``expires``)."""
        doc = await self.doc()
        return {i: s for i, s in doc["subscriptions"].items() if s.get("expires") is None or s["expires"] > self.now}

    async def get(self):
        args = self.call.arguments
        if "accountId" in args:
            raise MethodError("invalidArguments", "PushSubscription/get takes no accountId")
        properties = args.get("properties")
        if properties is None:
            properties = [p for p in PROPERTIES if p not in HIDDEN]
        elif not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
            raise MethodError("invalidArguments", "properties must be an array of strings")
        elif any(p in HIDDEN for p in properties):
            # RFC 8620 s7.2.1: url and keys are not returned; asking for them is forbidden.
            raise MethodError("forbidden", "url and keys are never returned")
        elif any(p not in PROPERTIES for p in properties):
            raise MethodError("invalidArguments", "unknown properties")
        ids = args.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise MethodError("invalidArguments", "ids must be an array of ids")
        records = await self.records()
        ids = list(records) if ids is None else [self.call.resolveId(i) for i in ids]
        limit = self.call.context.limits.maxObjectsInGet
        if len(ids) > limit:
            raise MethodError("requestTooLarge", f"at most {limit} objects per /get")
        wanted = ["id"] + [p for p in properties if p != "id"]
        unique = list(dict.fromkeys(ids))
        return {"list": [{p: public(records[i])[p] for p in wanted} for i in unique if i in records],
                "notFound": [i for i in unique if i not in records]}

    # /set

    def _expires(self, value):
        """The expiry to keep: the client's, capped at push_expires_max ahead (s7.2: the server may shorten it)."""
        latest = self.now + self.sender.maxExpires
        if value is None:
            return latest
        when = parseUTCDate(value)
        if when is None:
            raise SetError("invalidProperties", "expires must be a UTCDate", properties=["expires"])
        return min(when, latest)

    def _types(self, value):
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > MAX_TYPES or not all(
                isinstance(t, str) and 0 < len(t) <= 100 and t.replace("/", "").isalnum() for t in value):
            raise SetError("invalidProperties", "types must be null or an array of type names", properties=["types"])
        return list(dict.fromkeys(value))

    async def _change(self, apply):
        def change(old):
            doc = old if validDoc(old) else emptyDoc(self.username)
            apply(doc["subscriptions"])
            return doc

        return await standard._call(self.data.update(self.username, DATA, change))

    async def create(self, record):
        unknown = [k for k in record if k not in ("deviceClientId", "url", "keys", "expires", "types")]
        if unknown:
            # verificationCode is the server's to send; id is the server's.
            raise SetError("invalidProperties", "only deviceClientId, url, keys, expires and types can be set",
                           properties=[k[:100] for k in unknown[:20]])
        device = record.get("deviceClientId")
        if not isinstance(device, str) or not device or len(device) > MAX_DEVICE_ID:
            raise SetError("invalidProperties", "deviceClientId must be a string", properties=["deviceClientId"])
        try:
            url = checkURL(record.get("url"), self.sender.allowedPrefixes)
        except ValueError as e:
            raise SetError("invalidProperties", str(e), properties=["url"]) from None
        keys = record.get("keys")
        if keys is not None:
            try:
                webpush.checkKeys(keys)
            except ValueError as e:
                raise SetError("invalidProperties", str(e), properties=["keys"]) from None
            keys = {"p256dh": keys["p256dh"], "auth": keys["auth"]}
        expires = self._expires(record.get("expires"))
        types = self._types(record.get("types"))
        records = await self.records()
        if len(records) >= self.sender.perUser:
            raise SetError("overQuota", f"at most {self.sender.perUser} push subscriptions per user")
        i = "P" + secrets.token_hex(10)
        stored = {"id": i, "deviceClientId": device, "url": url, "keys": keys, "expires": expires, "types": types,
                  "code": secrets.token_urlsafe(18), "verified": False}
        limit = self.sender.perUser

        def apply(subscriptions):
            for k in [k for k, s in subscriptions.items() if s.get("expires") is not None and s["expires"] <= self.now]:
                del subscriptions[k]  # expired ones go when the document is written
            if len(subscriptions) >= limit:
                raise SetError("overQuota", f"at most {limit} push subscriptions per user")
            subscriptions[i] = stored

        doc = await self._change(apply)
        # Durable first, then the verification (s7.2.2) is sent.
        self.sender.changed(self.username, doc)
        self.sender.verify(self.username, i)
        serverSet = {"verificationCode": None}
        if record.get("expires") is None or parseUTCDate(record["expires"]) != expires:
            serverSet["expires"] = utcDate(expires)
        if "types" not in record:
            serverSet["types"] = None
        return i, serverSet

    async def update(self, i, patch):
        records = await self.records()
        if i not in records:
            raise SetError("notFound")
        stored = records[i]
        current = public(stored)
        new = standard.applyPatch(current, patch)
        for key in ("id", "deviceClientId", "url", "keys"):
            if new.get(key) != current.get(key):
                # s7.2: immutable.
                raise SetError("invalidProperties", f"{key} cannot be changed", properties=[key])
        unknown = [k for k in new if k not in PROPERTIES]
        if unknown:
            raise SetError("invalidProperties", "unknown properties", properties=[k[:100] for k in unknown[:20]])
        fields = {}
        code = new.get("verificationCode")
        if code != current["verificationCode"]:
            if code is None or code != stored["code"]:
                # s7.2.2: the code must be the one the server sent.
                raise SetError("invalidProperties", "verificationCode is not the one sent",
                               properties=["verificationCode"])
            fields["verified"] = True
        serverSet = {}
        if new.get("expires") != current["expires"]:
            fields["expires"] = self._expires(new.get("expires"))
            if utcDate(fields["expires"]) != new.get("expires"):
                serverSet["expires"] = utcDate(fields["expires"])
        if new.get("types") != current["types"]:
            fields["types"] = self._types(new.get("types"))

        def apply(subscriptions):
            if i not in subscriptions:
                raise SetError("notFound")
            subscriptions[i] = dict(subscriptions[i], **fields)

        if fields:
            self.sender.changed(self.username, await self._change(apply))
        return serverSet or None

    async def destroy(self, i):
        records = await self.records()
        if i not in records:
            raise SetError("notFound")

        def apply(subscriptions):
            subscriptions.pop(i, None)

        self.sender.changed(self.username, await self._change(apply))

    async def set(self):
        args = self.call.arguments
        for name in ("accountId", "ifInState"):
            if name in args:
                raise MethodError("invalidArguments", f"PushSubscription/set takes no {name}")
        create = args.get("create") or {}
        update = args.get("update") or {}
        destroy = args.get("destroy") or []
        if not isinstance(create, dict) or not all(isinstance(v, dict) for v in create.values()):
            raise MethodError("invalidArguments", "create must map creation ids to objects")
        if not isinstance(update, dict) or not all(isinstance(v, dict) for v in update.values()):
            raise MethodError("invalidArguments", "update must map ids to patch objects")
        if not isinstance(destroy, list) or not all(isinstance(v, str) for v in destroy):
            raise MethodError("invalidArguments", "destroy must be an array of ids")
        limit = self.call.context.limits.maxObjectsInSet
        if len(create) + len(update) + len(destroy) > limit:
            raise MethodError("requestTooLarge", f"at most {limit} objects per /set")
        answer = {"created": {}, "updated": {}, "destroyed": [], "notCreated": {}, "notUpdated": {},
                  "notDestroyed": {}}
        for creationId, record in create.items():
            try:
                i, serverSet = await self.create(record)
            except SetError as e:
                answer["notCreated"][creationId] = e.arguments()
                continue
            answer["created"][creationId] = dict(serverSet, id=i)
            self.call.context.createdIds[creationId] = i
        for key, patch in update.items():
            try:
                i = self.call.resolveId(key)
                answer["updated"][i] = await self.update(i, patch)
            except MethodError:
                answer["notUpdated"][key] = SetError("notFound").arguments()
            except SetError as e:
                answer["notUpdated"][key] = e.arguments()
        for key in destroy:
            try:
                i = self.call.resolveId(key)
                await self.destroy(i)
                answer["destroyed"].append(i)
            except MethodError:
                answer["notDestroyed"][key] = SetError("notFound").arguments()
            except SetError as e:
                answer["notDestroyed"][key] = e.arguments()
        return {k: (v or None) for k, v in answer.items()}


def register(registry):
    # RFC 8620 s7.2: in the core capability, with no account.
    registry.method("PushSubscription/get", lambda call: Subscriptions(call).get(), CORE)
    registry.method("PushSubscription/set", lambda call: Subscriptions(call).set(), CORE)
