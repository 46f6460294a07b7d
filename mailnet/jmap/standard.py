"""
The standard methods of RFC 8620 s5 as generic functions a data type plugs
into: ``/get`` (s5.1), ``/changes`` (s5.2), ``/set`` (s5.3), ``/query``
(s5.5), ``/queryChanges`` (s5.6).  Pure: the data type object does the
reading and writing (its methods may be ``async``); these check the
arguments, enforce the limits and shape the answers.

A data type is an object with (see ``tests/jmap/toy.py`` for a complete one):

- ``name`` ("Mailbox"), ``properties`` (all property names, ``id`` first),
  ``defaultProperties`` (returned when ``properties`` is null);
- ``state(account)`` -> the current state string;
- ``allIds(account)`` -> every id (for ``ids: null``);
- ``read(account, ids)`` -> ``{id: record}`` of those that exist;
- ``changes(account, sinceState, maxChanges)`` -> :class:`Changes`, or
  raise ``MethodError("cannotCalculateChanges")``;
- ``create(account, record)`` -> ``(id, serverSet)``; ``update(account, id,
  patch)`` -> serverSet or None; ``destroy(account, id)``: each raises
  :class:`~mailnet.jmap.errors.SetError` for that record alone;
- ``query(account, filter, sort)`` -> ``(queryState, ids in order)``
  (raise ``MethodError("unsupportedFilter")``/``"unsupportedSort"``);
- ``queryAt(account, filter, sort, queryState)`` -> the ids the query had at
  that state, or None (then ``/queryChanges`` is cannotCalculateChanges).

Each is called with the account's ``backend``.
"""

from __future__ import annotations

import dataclasses
import inspect

from mailnet.jmap.errors import MethodError, SetError

UNSIGNED_MAX = 2 ** 53 - 1  # RFC 8620 s1.3 UnsignedInt


@dataclasses.dataclass
class Changes:
    oldState: str
    newState: str
    hasMoreChanges: bool
    created: list
    updated: list
    destroyed: list


async def _call(value):
    if inspect.isawaitable(value):
        return await value
    return value


def changesFromLog(log, since, counter, maxChanges=None):
    """
    ``(created, updated, destroyed, upTo)`` since change ``since`` of a small
    per-user log of ``(n, id, kind)`` entries numbered up to ``counter``
    (RFC 8620 s5.2: an id created then destroyed in between is left out,
    created then updated is created).  cannotCalculateChanges when ``since``
    is ahead of ``counter`` or older than the oldest entry the log kept.

    ``maxChanges`` (RFC 8620 s5.2): at most that many ids; the log is read in
    order and stops before the entry that would name one id too many, so
    ``upTo`` (the change number the answer reaches: its ``newState``) is
    less than ``counter`` exactly when there are more changes
    (``hasMoreChanges``).  The changes of one entry are never split.
    """
    if since > counter or (since < counter and (not log or log[0][0] > since + 1)):
        raise MethodError("cannotCalculateChanges")
    kinds = {}
    upTo = since
    for n, i, kind in log:
        if n <= since:
            continue
        if maxChanges is not None and i not in kinds and len(kinds) >= maxChanges:
            break
        if kind == "created" or kinds.get(i) == "created":
            kinds[i] = "gone" if kind == "destroyed" else "created"
        else:
            kinds[i] = kind
        upTo = n
    else:
        upTo = counter
    out = tuple(sorted(i for i, v in kinds.items() if v == k) for k in ("created", "updated", "destroyed"))
    return out + (upTo,)


def _bad(description):
    return MethodError("invalidArguments", description)


def _unsigned(args, key, default=None, minimum=0):
    value = args.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or value > UNSIGNED_MAX:
        raise _bad(f"{key} must be an integer >= {minimum}")
    return value


def _int(args, key, default):
    value = args.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > UNSIGNED_MAX:
        raise _bad(f"{key} must be an integer")
    return value


def _ids(call, key, allowNull=True):
    value = call.arguments.get(key)
    if value is None:
        if allowNull:
            return None
        raise _bad(f"{key} must be an array of ids")
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise _bad(f"{key} must be an array of ids")
    return [call.resolveId(i) for i in value]


async def standardGet(call, dataType) -> dict:
    """RFC 8620 s5.1 ``/get``: ids (null = all, within maxObjectsInGet), properties."""
    account = call.account()
    limit = call.context.limits.maxObjectsInGet
    ids = _ids(call, "ids")
    properties = call.arguments.get("properties")
    if properties is None:
        properties = list(dataType.defaultProperties)
    elif not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise _bad("properties must be an array of strings")
    else:
        unknown = [p for p in properties if p not in dataType.properties]
        if unknown:
            raise _bad(f"unknown properties: {', '.join(p[:50] for p in unknown[:10])}")
    state = await _call(dataType.state(account.backend))
    if ids is None:
        ids = list(await _call(dataType.allIds(account.backend)))
    if len(ids) > limit:
        # RFC 8620 s5.1: requestTooLarge above maxObjectsInGet.
        raise MethodError("requestTooLarge", f"at most {limit} objects per /get")
    unique = list(dict.fromkeys(ids))
    found = await _call(dataType.read(account.backend, unique))
    wanted = ["id"] + [p for p in properties if p != "id"]  # "id" is always returned
    return {
        "accountId": account.id,
        "state": state,
        "list": [{p: found[i][p] for p in wanted if p in found[i]} for i in unique if i in found],
        "notFound": [i for i in unique if i not in found],
    }


async def standardChanges(call, dataType) -> dict:
    """RFC 8620 s5.2 ``/changes``."""
    account = call.account()
    since = call.arguments.get("sinceState")
    if not isinstance(since, str):
        raise _bad("sinceState must be a string")
    maxChanges = _unsigned(call.arguments, "maxChanges", None, minimum=1)
    changes = await _call(dataType.changes(account.backend, since, maxChanges))
    return {"accountId": account.id, "oldState": changes.oldState, "newState": changes.newState,
            "hasMoreChanges": changes.hasMoreChanges, "created": changes.created,
            "updated": changes.updated, "destroyed": changes.destroyed}


async def standardSet(call, dataType) -> dict:
    """RFC 8620 s5.3 ``/set``: ifInState, create (creation ids), update, destroy."""
    account = call.account()
    args = call.arguments
    create = args.get("create")
    update = args.get("update")
    destroy = args.get("destroy")
    create = {} if create is None else create
    update = {} if update is None else update
    destroy = [] if destroy is None else destroy
    if not isinstance(create, dict) or not all(isinstance(v, dict) for v in create.values()):
        raise _bad("create must map creation ids to objects")
    if not isinstance(update, dict) or not all(isinstance(v, dict) for v in update.values()):
        raise _bad("update must map ids to patch objects")
    if not isinstance(destroy, list) or not all(isinstance(v, str) for v in destroy):
        raise _bad("destroy must be an array of ids")
    limit = call.context.limits.maxObjectsInSet
    if len(create) + len(update) + len(destroy) > limit:
        raise MethodError("requestTooLarge", f"at most {limit} objects per /set")
    oldState = await _call(dataType.state(account.backend))
    ifInState = args.get("ifInState")
    if ifInState is not None:
        if not isinstance(ifInState, str):
            raise _bad("ifInState must be a string")
        if ifInState != oldState:
            raise MethodError("stateMismatch")
    created, notCreated = {}, {}
    for creationId, record in create.items():
        try:
            if "id" in record:
                raise SetError("invalidProperties", "id is set by the server", properties=["id"])
            newId, serverSet = await _call(dataType.create(account.backend, record))
        except SetError as e:
            notCreated[creationId] = e.arguments()
            continue
        created[creationId] = dict(serverSet or {}, id=newId)
        call.context.createdIds[creationId] = newId
    updated, notUpdated = {}, {}
    for key, patch in update.items():
        try:
            target = call.resolveId(key)
        except MethodError:
            notUpdated[key] = SetError("notFound").arguments()
            continue
        try:
            updated[target] = await _call(dataType.update(account.backend, target, patch))
        except SetError as e:
            notUpdated[target] = e.arguments()
    destroyed, notDestroyed = [], {}
    for key in destroy:
        try:
            target = call.resolveId(key)
        except MethodError:
            notDestroyed[key] = SetError("notFound").arguments()
            continue
        try:
            await _call(dataType.destroy(account.backend, target))
            destroyed.append(target)
        except SetError as e:
            notDestroyed[target] = e.arguments()
    newState = await _call(dataType.state(account.backend))
    return {"accountId": account.id, "oldState": oldState, "newState": newState,
            "created": created or None, "updated": updated or None, "destroyed": destroyed or None,
            "notCreated": notCreated or None, "notUpdated": notUpdated or None,
            "notDestroyed": notDestroyed or None}


def applyPatch(record: dict, patch: dict) -> dict:
    """
    RFC 8620 s5.3 PatchObject: keys are JSON Pointers (without the leading
    ``/``) into ``record``; null removes.  Returns a new record;
    ``SetError("invalidPatch")`` when a path does not resolve.
    """
    out = _deepCopy(record)
    for path, value in patch.items():
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")]
        target = out
        for token in tokens[:-1]:
            if not isinstance(target, dict) or token not in target or not isinstance(target[token], dict):
                raise SetError("invalidPatch", f"{path[:100]!r} does not resolve")
            target = target[token]
        last = tokens[-1]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return out


def _deepCopy(value):
    if isinstance(value, dict):
        return {k: _deepCopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepCopy(v) for v in value]
    return value


def _queryArguments(call):
    args = call.arguments
    filter = args.get("filter")
    if filter is not None and not isinstance(filter, dict):
        raise _bad("filter must be an object or null")
    sort = args.get("sort")
    if sort is not None:
        if not isinstance(sort, list) or not all(isinstance(s, dict) and isinstance(s.get("property"), str)
                                                   for s in sort):
            raise _bad("sort must be an array of Comparators")
    calculateTotal = args.get("calculateTotal", False)
    if not isinstance(calculateTotal, bool):
        raise _bad("calculateTotal must be a boolean")
    return filter, sort, calculateTotal


async def standardQuery(call, dataType, maxLimit=None) -> dict:
    """RFC 8620 s5.5 ``/query``: position or anchor/anchorOffset, limit, calculateTotal."""
    account = call.account()
    args = call.arguments
    filter, sort, calculateTotal = _queryArguments(call)
    position = _int(args, "position", 0)
    anchor = args.get("anchor")
    if anchor is not None and not isinstance(anchor, str):
        raise _bad("anchor must be an id")
    anchorOffset = _int(args, "anchorOffset", 0)
    limit = _unsigned(args, "limit", None)
    queryState, ids = await _call(dataType.query(account.backend, filter, sort))
    ids = list(ids)
    total = len(ids)
    if anchor is not None:
        # RFC 8620 s5.5: the anchor wins over position.
        try:
            index = ids.index(call.resolveId(anchor))
        except ValueError:
            raise MethodError("anchorNotFound")
        start = max(0, index + anchorOffset)
    elif position < 0:
        start = max(0, total + position)
    else:
        start = position
    answer = {"accountId": account.id, "queryState": queryState,
              "canCalculateChanges": getattr(dataType, "canCalculateQueryChanges", True)}
    if maxLimit is not None and (limit is None or limit > maxLimit):
        limit = maxLimit
        answer["limit"] = maxLimit  # s5.5: returned when the server capped it
    end = total if limit is None else start + limit
    answer["position"] = min(start, total)
    answer["ids"] = ids[start:end]
    if calculateTotal:
        answer["total"] = total
    return answer


def diffQuery(oldIds, newIds, upToId=None):
    """
    RFC 8620 s5.6: what turns the old result into the new one: ``removed``
    (ids gone or moved) and ``added`` (``{"id", "index"}`` in order), up to
    ``upToId`` when given.
    """
    newIndex = {i: n for n, i in enumerate(newIds)}
    # An id that stays with the same order relative to the others stays put:
    # keep the longest run of ids present in both, in the same order.
    common = [i for i in oldIds if i in newIndex]
    kept = set(_longestIncreasing(common, newIndex))
    removed, added = [], []
    for i in oldIds:
        if i not in kept:
            removed.append(i)
        if upToId is not None and i == upToId:
            break
    for i in newIds:
        if i not in kept:
            added.append({"id": i, "index": newIndex[i]})
        if upToId is not None and i == upToId:
            break
    return removed, added


def _longestIncreasing(items, key):
    """The longest subsequence of ``items`` whose ``key[item]`` increases (patience sort)."""
    import bisect

    tails, tailItems, previous = [], [], {}
    for item in items:
        k = key[item]
        at = bisect.bisect_left(tails, k)
        previous[item] = tailItems[at - 1] if at else None
        if at == len(tails):
            tails.append(k)
            tailItems.append(item)
        else:
            tails[at] = k
            tailItems[at] = item
    out = []
    item = tailItems[-1] if tailItems else None
    while item is not None:
        out.append(item)
        item = previous[item]
    return out[::-1]


def queryChangesFromUpdates(newIds, created, updated, destroyed, upToId=None):
    """
    RFC 8620 s5.6 without the old result: from what changed since
    (``created``, ``updated``, ``destroyed`` ids of the type), when a
    record's place in the result changes only when the record itself does.
    ``removed``: every updated or destroyed id (some may not have been in
    the old result, which s5.6 allows); ``added``: every created or
    updated id in ``newIds`` with its index, up to ``upToId`` when given.
    """
    touched = set(created) | set(updated)
    removed = list(dict.fromkeys(list(updated) + list(destroyed)))
    added = []
    for index, i in enumerate(newIds):
        if i in touched:
            added.append({"id": i, "index": index})
        if upToId is not None and i == upToId:
            break
    return removed, added


async def standardQueryChanges(call, dataType) -> dict:
    """RFC 8620 s5.6 ``/queryChanges``."""
    account = call.account()
    args = call.arguments
    filter, sort, calculateTotal = _queryArguments(call)
    since = args.get("sinceQueryState")
    if not isinstance(since, str):
        raise _bad("sinceQueryState must be a string")
    maxChanges = _unsigned(args, "maxChanges", None, minimum=1)
    upToId = args.get("upToId")
    if upToId is not None and not isinstance(upToId, str):
        raise _bad("upToId must be an id")
    old = await _call(dataType.queryAt(account.backend, filter, sort, since))
    if old is None:
        raise MethodError("cannotCalculateChanges")
    queryState, ids = await _call(dataType.query(account.backend, filter, sort))
    removed, added = diffQuery(list(old), list(ids), upToId)
    if maxChanges is not None and len(removed) + len(added) > maxChanges:
        raise MethodError("tooManyChanges")
    answer = {"accountId": account.id, "oldQueryState": since, "newQueryState": queryState,
              "removed": removed, "added": added}
    if calculateTotal:
        answer["total"] = len(ids)
    return answer
