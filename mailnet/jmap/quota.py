"""
RFC 9425: the Quota data type and the ``urn:ietf:params:jmap:quota``
capability, over the store's ``IAccount.quota()`` (docs/store.md "Quota").
Pure.

An account has up to two Quota objects, one per limit that is set:
``octets`` (resourceType "octets": the storage) and ``count`` (resourceType
"count": the messages), both of scope "account" and type "Mail".  The
state is the usage and limits themselves, so /changes can tell exactly
which object changed since any earlier state (and /queryChanges what a
query gave then), without a journal.

:func:`checkQuota` is the helper for JMAP writes that add messages
(Email/set create, Email/import): it raises the ``overQuota`` SetError
(RFC 8620 s5.3, RFC 8621 s4.6) when the message does not fit.
"""

from __future__ import annotations

import re

from mailnet.jmap import mailstore, standard
from mailnet.jmap.errors import MethodError, ServerUnavailable, SetError
from mailnet.store.interfaces import OverQuota, TemporaryStoreError

QUOTA = "urn:ietf:params:jmap:quota"

OCTETS, COUNT = "octets", "count"  # the Quota ids, named after their resourceType
_STATE = re.compile(r"^q(\d{1,20})-(\d{1,20})-(\d{1,20})-(\d{1,20})-(\d{1,3})$")


class Quotas:
    name = "Quota"
    # RFC 9425 s4: id, resourceType, used, hardLimit, scope, name, types;
    # warnLimit, softLimit and description are optional (warnLimit: [quota] warning).
    properties = ("id", "resourceType", "used", "hardLimit", "scope", "name", "types", "warnLimit", "description")
    defaultProperties = properties

    async def _values(self, account):
        """``(storage, storageLimit, messages, messageLimit, warning)`` now."""
        quota = getattr(account, "quota", None)
        if quota is None:
            return 0, 0, 0, 0, 0
        usage = await mailstore.wait(quota())
        return usage.storage, usage.limits.storage, usage.messages, usage.limits.messages, usage.warning

    async def state(self, account):
        return _stateOf(await self._values(account))

    async def allIds(self, account):
        return list(_records(await self._values(account)))

    async def read(self, account, ids):
        records = _records(await self._values(account))
        return {i: records[i] for i in ids if i in records}

    async def changes(self, account, sinceState, maxChanges):
        old = _parseState(sinceState)
        if old is None:
            raise MethodError("cannotCalculateChanges")
        values = await self._values(account)
        new = _stateOf(values)
        before, after = _records(old), _records(values)
        created = [i for i in after if i not in before]
        destroyed = [i for i in before if i not in after]
        updated = [i for i in after if i in before and before[i] != after[i]]
        # At most two ids: maxChanges (>= 1) cuts nothing that matters; all fit in one answer.
        return standard.Changes(sinceState, new, False, created, updated, destroyed)

    async def query(self, account, filter, sort):
        values = await self._values(account)
        return _stateOf(values), _query(_records(values), filter, sort)

    async def queryAt(self, account, filter, sort, queryState):
        old = _parseState(queryState)
        return None if old is None else _query(_records(old), filter, sort)


def _stateOf(values):
    return "q%d-%d-%d-%d-%d" % tuple(values)


def _parseState(state):
    m = _STATE.match(state) if isinstance(state, str) else None
    if m is None:
        return None
    return tuple(int(g) for g in m.groups())


def _records(values) -> dict:
    storage, storageLimit, messages, messageLimit, warning = values
    out = {}
    common = {"scope": "account", "types": ["Mail"]}
    if storageLimit:
        out[OCTETS] = {"id": OCTETS, "resourceType": "octets", "used": storage, "hardLimit": storageLimit,
                       "name": "Mail storage", "description": "Bytes of all messages in the account", **common}
        if warning:
            out[OCTETS]["warnLimit"] = storageLimit * warning // 100
    if messageLimit:
        out[COUNT] = {"id": COUNT, "resourceType": "count", "used": messages, "hardLimit": messageLimit,
                      "name": "Mail messages", "description": "Messages in the account", **common}
        if warning:
            out[COUNT]["warnLimit"] = messageLimit * warning // 100
    return out


_FILTERS = {"name", "scope", "resourceType", "type"}
_SORTS = {"name", "used"}


def _query(records, filter, sort):
    """RFC 9425 s4.4: the filter conditions and sort properties."""
    items = list(records.values())
    if filter:
        if set(filter) - _FILTERS or not all(isinstance(v, str) for v in filter.values()):
            raise MethodError("unsupportedFilter")
        if "name" in filter:
            items = [r for r in items if filter["name"].lower() in r["name"].lower()]
        if "scope" in filter:
            items = [r for r in items if r["scope"] == filter["scope"]]
        if "resourceType" in filter:
            items = [r for r in items if r["resourceType"] == filter["resourceType"]]
        if "type" in filter:
            items = [r for r in items if filter["type"] in r["types"]]
    for comparator in reversed(sort or [{"property": "name"}]):
        prop = comparator["property"]
        if prop not in _SORTS:
            raise MethodError("unsupportedSort")
        items.sort(key=lambda r: r[prop], reverse=not comparator.get("isAscending", True))
    return [r["id"] for r in items]


async def checkQuota(account, size, count=1):
    """
    For JMAP writes that add messages (Email/set create, Email/import):
    raises ``SetError("overQuota")`` when ``count`` messages of ``size``
    bytes do not fit the user's quota (``IAccount.checkQuota``); a store
    without quotas allows everything.
    """
    check = getattr(account, "checkQuota", None)
    if check is None:
        return
    try:
        await check(size, count)
    except OverQuota as e:  # before mailstore.wait's TemporaryStoreError -> serverUnavailable
        raise SetError("overQuota", str(e)) from None
    except TemporaryStoreError as e:
        raise ServerUnavailable(str(e)) from None


TYPE = Quotas()


def register(registry):
    # RFC 9425 s3: the session and account values are empty objects.
    registry.capability(QUOTA, {}, accountValue={})
    registry.method("Quota/get", lambda call: standard.standardGet(call, TYPE), QUOTA)
    registry.method("Quota/changes", lambda call: standard.standardChanges(call, TYPE), QUOTA)
    registry.method("Quota/query", lambda call: standard.standardQuery(call, TYPE), QUOTA)
    registry.method("Quota/queryChanges", lambda call: standard.standardQueryChanges(call, TYPE), QUOTA)
