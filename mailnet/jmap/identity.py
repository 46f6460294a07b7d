"""
RFC 8621 s6: Identity, the From addresses a user may send with.  Pure: the
addresses come from the same rule as SMTP submission
(:meth:`mailnet.auth.Directory.mayUseSender`, through :class:`SendRules`),
and the fields the user sets are kept by an :class:`IUserData` (the
server's writes a small JSON file per user, mailnet/http/userdata.py).

* One Identity per address the user may send as: their own address and
  every alias (not a catch-all) that delivers to them.  These have
  ``mayDelete`` false: they follow the rules, not the user.
* Identity/set may change ``name``, ``replyTo``, ``bcc``,
  ``textSignature``, ``htmlSignature`` of any, and create one for another
  address the user may send as (``user+tag@domain``), which may be
  destroyed (``mayDelete`` true).  ``email`` is immutable (RFC 8621 s6).
* The state is ``<counter>-<digest of the addresses>``: a change of the
  aliases file changes it, and /changes across such a change is
  ``cannotCalculateChanges``.
"""

from __future__ import annotations

import hashlib
import inspect
import time

from zope.interface import Interface

from mailnet.jmap import standard
from mailnet.jmap.errors import MethodError, ServerUnavailable, SetError
from mailnet.store.interfaces import TemporaryStoreError

SUBMISSION = "urn:ietf:params:jmap:submission"
DATA = "identities"  # the IUserData name
SETTABLE = ("name", "replyTo", "bcc", "textSignature", "htmlSignature")
PROPERTIES = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature", "mayDelete")
MAX_CREATED = 100  # identities one user may create
MAX_TEXT = 64 * 1024  # a signature or a name
CHANGES_KEPT = 200


class IUserData(Interface):
    """Small per-user JSON documents the JMAP data types keep (identities...)."""

    def load(username, name):
        """The document (a dict) or None; may return a Deferred."""

    def update(username, name, change):
        """
        Replace the document with ``change(old)`` (old: dict or None), one
        change at a time per user, durably (fsynced) before the result
        fires; returns (a Deferred of) the new document.  ``change`` may
        raise to change nothing.
        """


class MemoryUserData:
    """An :class:`IUserData` in memory (tests, embedding)."""

    def __init__(self):
        self.docs = {}

    def load(self, username, name):
        return self.docs.get((username.lower(), name))

    def loadAll(self, name):
        return [(u, doc) for (u, n), doc in self.docs.items() if n == name]

    def update(self, username, name, change):
        new = change(self.docs.get((username.lower(), name)))
        self.docs[(username.lower(), name)] = new
        return new


class SendRules:
    """
    Who may send as what: the SMTP submission rule
    (``Directory.mayUseSender``) and the addresses it allows (the user's
    own, and the aliases file's addresses that deliver to them).
    """

    def __init__(self, directory):
        self.directory = directory

    def mayUse(self, username, address) -> bool:
        return isinstance(address, str) and self.directory.mayUseSender(username, address)

    def addresses(self, username) -> list:
        out = [username.lower()]
        aliases = getattr(self.directory, "aliases", None)
        listed = aliases.list() if aliases is not None else {}
        for address in sorted(listed):
            if not address.startswith("@") and address.lower() not in out and self.mayUse(username, address):
                out.append(address.lower())
        return out


def identityId(address: str) -> str:
    return "I" + hashlib.sha256(address.lower().encode("utf-8")).hexdigest()[:20]


async def _value(v):
    """Await an IUserData answer; a store outage (the database's) is serverUnavailable."""
    try:
        if inspect.isawaitable(v):
            return await v
        return v
    except TemporaryStoreError as e:
        raise ServerUnavailable(str(e)) from None


def _emptyDoc():
    return {"version": 1, "counter": 0, "identities": {}, "changes": []}


class Identities:
    """The Identity data type of one call (the user's, through ``services``)."""

    name = "Identity"
    properties = PROPERTIES
    defaultProperties = PROPERTIES

    def __init__(self, call):
        services = call.context.services
        self.username = call.context.username
        self.rules = services.get("sendRules")
        self.data = services.get("userData")
        if self.rules is None or self.data is None:
            raise MethodError("forbidden", "sending is not set up on this server")

    def _derived(self):
        return self.rules.addresses(self.username)

    async def _doc(self):
        doc = await _value(self.data.load(self.username, DATA))
        return doc if isinstance(doc, dict) and doc.get("version") == 1 else _emptyDoc()

    def _digest(self, derived):
        return hashlib.sha256("\n".join(derived).encode()).hexdigest()[:8]

    async def records(self):
        """id -> Identity object (derived ones first)."""
        doc = await self._doc()
        derived = self._derived()
        out = {}
        stored = doc["identities"]
        for address in derived:
            i = identityId(address)
            out[i] = self._record(i, address, stored.get(i, {}), False)
        for i, fields in stored.items():
            if fields.get("created") and i not in out and self.rules.mayUse(self.username, fields.get("email")):
                out[i] = self._record(i, fields["email"], fields, True)
        return out

    def _record(self, i, address, fields, mayDelete):
        return {"id": i, "name": fields.get("name", ""), "email": address, "replyTo": fields.get("replyTo"),
                "bcc": fields.get("bcc"), "textSignature": fields.get("textSignature", ""),
                "htmlSignature": fields.get("htmlSignature", ""), "mayDelete": mayDelete}

    async def state(self, account):
        doc = await self._doc()
        return f"{doc['counter']}-{self._digest(self._derived())}"

    async def allIds(self, account):
        return list(await self.records())

    async def read(self, account, ids):
        records = await self.records()
        return {i: records[i] for i in ids if i in records}

    async def changes(self, account, sinceState, maxChanges):
        doc = await self._doc()
        digest = self._digest(self._derived())
        now = f"{doc['counter']}-{digest}"
        counter, _, oldDigest = sinceState.partition("-")
        if not counter.isdigit() or oldDigest != digest:
            raise MethodError("cannotCalculateChanges")
        created, updated, destroyed, upTo = standard.changesFromLog(doc["changes"], int(counter), doc["counter"],
                                                                    maxChanges)
        # RFC 8620 s5.2: cut by maxChanges, newState is the intermediate state reached.
        newState = now if upTo == doc["counter"] else f"{upTo}-{digest}"
        return standard.Changes(sinceState, newState, upTo < doc["counter"], created, updated, destroyed)

    # /set

    def _check(self, record, creating):
        fields = {}
        for key, value in record.items():
            if key == "email" and creating:
                continue
            if key not in SETTABLE:
                raise SetError("invalidProperties", f"{key[:60]} cannot be set", properties=[key[:100]])
            if key in ("name", "textSignature", "htmlSignature"):
                if not isinstance(value, str) or len(value) > MAX_TEXT:
                    raise SetError("invalidProperties", f"{key} must be a string", properties=[key])
            elif value is not None and not (isinstance(value, list) and len(value) <= 100 and all(
                    isinstance(a, dict) and isinstance(a.get("email"), str)
                    and (a.get("name") is None or isinstance(a.get("name"), str)) for a in value)):
                raise SetError("invalidProperties", f"{key} must be null or EmailAddress objects", properties=[key])
            fields[key] = value
        return fields

    async def _change(self, i, kind, apply):
        def change(old):
            doc = old if isinstance(old, dict) and old.get("version") == 1 else _emptyDoc()
            apply(doc["identities"])
            doc["counter"] += 1
            doc["changes"] = (doc["changes"] + [[doc["counter"], i, kind]])[-CHANGES_KEPT:]
            return doc

        await _value(self.data.update(self.username, DATA, change))

    async def create(self, account, record):
        email = record.get("email")
        if not isinstance(email, str) or not self.rules.mayUse(self.username, email):
            # RFC 8621 s6.3: forbiddenFrom, an address the user may not send as.
            raise SetError("forbiddenFrom", "you may not send as this address", properties=["email"])
        fields = self._check(record, True)
        i = identityId(email)
        records = await self.records()
        if i in records:
            raise SetError("invalidProperties", "there is an Identity for this address", properties=["email"])
        if sum(1 for r in records.values() if r["mayDelete"]) >= MAX_CREATED:
            raise SetError("overQuota", f"at most {MAX_CREATED} identities of your own")

        def apply(identities):
            identities[i] = dict(fields, email=email.lower(), created=True)

        await self._change(i, "created", apply)
        return i, {"mayDelete": True, **{k: v for k, v in self._record(i, email.lower(), fields, True).items()
                                         if k not in record and k != "id"}}

    async def update(self, account, i, patch):
        records = await self.records()
        if i not in records:
            raise SetError("notFound")
        current = {k: records[i][k] for k in SETTABLE}
        if "email" in patch and patch["email"] != records[i]["email"]:
            raise SetError("invalidProperties", "email cannot be changed", properties=["email"])
        new = standard.applyPatch(current, {k: v for k, v in patch.items() if k != "email"})
        fields = self._check(new, False)

        def apply(identities):
            kept = identities.get(i, {})
            identities[i] = dict(kept, **fields)

        await self._change(i, "updated", apply)
        return None

    async def destroy(self, account, i):
        records = await self.records()
        if i not in records:
            raise SetError("notFound")
        if not records[i]["mayDelete"]:
            # RFC 8621 s6: mayDelete false -> forbidden.
            raise SetError("forbidden", "this Identity follows the server's rules and cannot be destroyed")
        await self._change(i, "destroyed", lambda identities: identities.pop(i, None))


def submissionCapability(maxDelayedSend=0, now=None) -> dict:
    """
    RFC 8621 s1.3.2: the account's submission capability.  With
    ``maxDelayedSend`` > 0 the FUTURERELEASE extension (RFC 4865 s3: the
    EHLO keyword's arguments, the longest interval and the latest
    date-time) is listed; the date-time is counted from the start of
    today (UTC), so it never promises more than ``maxDelayedSend`` from
    now and the session (and its state) changes once a day, not every
    second.
    """
    if maxDelayedSend <= 0:
        return {"maxDelayedSend": 0, "submissionExtensions": {}}
    arguments = [str(maxDelayedSend)]
    if now is not None:
        day = int(now) - int(now) % 86400
        arguments.append(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day + maxDelayedSend)))
    return {"maxDelayedSend": maxDelayedSend, "submissionExtensions": {"FUTURERELEASE": arguments}}


def register(registry):
    # RFC 8621 s1.3.2: the submission capability; the server sets maxDelayedSend
    # ([jmap] max_delayed_send, mailnet/http/server.py).
    registry.capability(SUBMISSION, {}, accountValue=submissionCapability(0))
    registry.method("Identity/get", lambda call: standard.standardGet(call, Identities(call)), SUBMISSION)
    registry.method("Identity/changes", lambda call: standard.standardChanges(call, Identities(call)), SUBMISSION)
    registry.method("Identity/set", lambda call: standard.standardSet(call, Identities(call)), SUBMISSION,
                    mutates=True)
