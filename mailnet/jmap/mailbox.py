"""
RFC 8621 s2: the Mailbox data type, and the ``urn:ietf:params:jmap:mail``
capability.  Pure: the store is read through :mod:`mailnet.jmap.mailstore`.

A Mailbox is a folder of the store: its id the folder's mailbox id, its
name the last component of the folder name (``/``-separated), its parent
the folder above when that exists, its role the folder's SPECIAL-USE
(RFC 6154; INBOX is ``inbox``).
"""

from __future__ import annotations

from mailnet.jmap import mailstore, standard
from mailnet.jmap.errors import MethodError, SetError
from mailnet.store.base import FolderLimits
from mailnet.store.interfaces import (
    INBOX,
    FolderExists,
    FolderLimitExceeded,
    InvalidFolderName,
    NoSuchFolder,
    StoreError,
)

MAIL = "urn:ietf:params:jmap:mail"
SEPARATOR = "/"

ROLES = {"\\sent": "sent", "\\drafts": "drafts", "\\trash": "trash", "\\junk": "junk",
         "\\archive": "archive", "\\all": "all", "\\flagged": "flagged", "\\important": "important"}


def accountCapability(username=None) -> dict:
    """RFC 8621 s1.3.1, the account's value of the mail capability."""
    limits = FolderLimits()  # the store's defaults; [limits] may set others (reported at create)
    return {
        "maxMailboxesPerEmail": 1,  # a message is in one folder (docs/store.md "Ids")
        "maxMailboxDepth": limits.depth,
        "maxSizeMailboxName": limits.nameLength,
        "maxSizeAttachmentsPerEmail": 35_000_000,
        "emailQuerySortOptions": ["receivedAt", "sentAt", "size", "from", "to", "subject", "hasKeyword",
                                  "allInThreadHaveKeyword", "someInThreadHaveKeyword"],  # jmap/emailquery.py
        "mayCreateTopLevelMailbox": True,
    }


def _role(info):
    if info.name == INBOX:
        return "inbox"
    return ROLES.get((info.specialUse or "").lower())


def _records(boxes) -> dict:
    byName = {b.name: b for b in boxes}
    out = {}
    for b in boxes:
        parentName, _, leaf = b.name.rpartition(SEPARATOR)
        parent = byName.get(parentName) if parentName else None
        name = leaf if parent is not None else b.name
        unread = [m for m in b.messages if "\\Seen" not in m.flags]
        # Without thread ids (not asked for, or a backend without them) each message is its own thread.
        threads = {b.threadIds.get(m.uid, m.uid) for m in b.messages}
        unreadThreads = {b.threadIds.get(m.uid, m.uid) for m in unread}
        isInbox = b.name == INBOX
        out[b.mailboxId] = {
            "id": b.mailboxId,
            "name": name,
            "parentId": parent.mailboxId if parent is not None else None,
            "role": _role(b),
            # RFC 8621 s2: sortOrder; INBOX first, then the other roles.
            "sortOrder": 0 if isInbox else (10 if _role(b) else 100),
            "totalEmails": len(b.messages),
            "unreadEmails": len(unread),
            "totalThreads": len(threads),
            "unreadThreads": len(unreadThreads),
            "myRights": {
                "mayReadItems": True, "mayAddItems": True, "mayRemoveItems": True,
                "maySetSeen": True, "maySetKeywords": True, "mayCreateChild": True,
                # INBOX cannot be deleted; renaming it moves its mail (RFC 3501), not what JMAP means.
                "mayRename": not isInbox, "mayDelete": not isInbox, "maySubmit": True,
            },
            "isSubscribed": b.subscribed,
            "_folder": b.name,
        }
    return out


def evaluate(filter, condition):
    """RFC 8620 s5.5 FilterOperator (AND, OR, NOT) over ``condition(FilterCondition)``."""
    if filter is None:
        return True
    if "operator" in filter:
        operator, conditions = filter.get("operator"), filter.get("conditions")
        if operator not in ("AND", "OR", "NOT") or not isinstance(conditions, list) or \
                not all(isinstance(c, dict) for c in conditions):
            raise MethodError("unsupportedFilter", "a FilterOperator needs operator AND/OR/NOT and conditions")
        results = [evaluate(c, condition) for c in conditions]
        if operator == "AND":
            return all(results)
        if operator == "OR":
            return any(results)
        return not any(results)
    return condition(filter)


FILTERS = {"parentId", "name", "role", "hasAnyRole", "isSubscribed"}


def _matches(record, condition) -> bool:
    """RFC 8621 s2.3: every property of a FilterCondition must match."""
    for key, value in condition.items():
        if key == "parentId":
            ok = record["parentId"] == value
        elif key == "name":
            ok = isinstance(value, str) and value.lower() in record["name"].lower()
        elif key == "role":
            ok = record["role"] == value
        elif key == "hasAnyRole":
            ok = (record["role"] is not None) == bool(value)
        else:  # isSubscribed
            ok = record["isSubscribed"] == bool(value)
        if not ok:
            return False
    return True


def checkFilter(filter, known):
    """unsupportedFilter for a property not in ``known`` (before anything is read)."""
    if filter is None:
        return
    if "operator" in filter:
        for c in filter.get("conditions") or []:
            if isinstance(c, dict):
                checkFilter(c, known)
        return
    unknown = set(filter) - known
    if unknown:
        raise MethodError("unsupportedFilter", f"unsupported filter: {', '.join(sorted(unknown))[:200]}")


class Mailboxes:
    name = "Mailbox"
    properties = ("id", "name", "parentId", "role", "sortOrder", "totalEmails", "unreadEmails",
                  "totalThreads", "unreadThreads", "myRights", "isSubscribed")
    defaultProperties = properties
    canCalculateQueryChanges = False

    def __init__(self, onDestroyRemoveEmails=False, cached=False, threadCounts=False, resolveId=None):
        self.onDestroyRemoveEmails = onDestroyRemoveEmails
        self.resolveId = resolveId  # RFC 8620 s5.3: "#creationId" for a Mailbox made earlier
        self.threadCounts = threadCounts
        # One /get or /query reads the folders once (state, ids, records); /set always reads afresh.
        self.cached = cached
        self._records = None

    async def state(self, account):
        return await mailstore.currentState(account)

    async def records(self, account):
        if self.cached and self._records is not None:
            return self._records
        records = _records(await mailstore.mailboxes(account, withThreads=self.threadCounts))
        if self.cached:
            self._records = records
        return records

    async def allIds(self, account):
        return list(await self.records(account))

    async def read(self, account, ids):
        records = await self.records(account)
        return {i: records[i] for i in ids if i in records}

    async def changes(self, account, sinceState, maxChanges):
        changes = await mailstore.changesSince(account, sinceState, maxChanges)
        self.lastChanges = changes.mailboxes
        m = changes.mailboxes
        return standard.Changes(m.oldState, m.newState, m.hasMoreChanges, list(m.created),
                                list(m.updated), list(m.destroyed))

    async def query(self, account, filter, sort):
        checkFilter(filter, FILTERS)
        records = await self.records(account)

        chosen = [r for r in records.values() if evaluate(filter, lambda c, r=r: _matches(r, c))]
        keys = []
        for comparator in sort or [{"property": "sortOrder"}, {"property": "name"}]:
            prop = comparator["property"]
            if prop not in ("name", "sortOrder"):
                raise MethodError("unsupportedSort", f"cannot sort Mailboxes by {prop[:100]}")
            keys.append((prop, comparator.get("isAscending", True) is not False))
        for prop, ascending in reversed(keys):
            chosen.sort(key=lambda r: r[prop].lower() if prop == "name" else r[prop], reverse=not ascending)
        return await self.state(account), [r["id"] for r in chosen]

    def queryAt(self, account, filter, sort, queryState):
        return None

    # /set (RFC 8621 s2.5)

    async def _parentName(self, account, parentId):
        if parentId is None:
            return None
        if self.resolveId is not None:
            try:
                parentId = self.resolveId(parentId)
            except MethodError:
                raise SetError("invalidProperties", "parentId names an unknown creation id",
                               properties=["parentId"]) from None
        records = await self.records(account)
        if not isinstance(parentId, str) or parentId not in records:
            raise SetError("invalidProperties", "parentId is not a Mailbox", properties=["parentId"])
        return records[parentId]["_folder"]

    def _checkName(self, name):
        if not isinstance(name, str) or not name or SEPARATOR in name:
            raise SetError("invalidProperties", f"name must be a non-empty string without {SEPARATOR}",
                           properties=["name"])

    async def create(self, account, record):
        allowed = {"name", "parentId", "isSubscribed", "sortOrder", "role"}
        bad = [k for k in record if k not in allowed]
        if bad:
            raise SetError("invalidProperties", "server-set or unknown properties", properties=bad)
        if record.get("role") is not None:
            raise SetError("invalidProperties", "roles come from the folder's SPECIAL-USE", properties=["role"])
        name = record.get("name")
        self._checkName(name)
        parent = await self._parentName(account, record.get("parentId"))
        full = name if parent is None else parent + SEPARATOR + name
        await self._storeCall(account.createFolder(full))
        if record.get("isSubscribed", True):
            await mailstore.wait(account.setSubscribed(full, True))
        folder = await mailstore.openFolder(account, full)
        try:
            return folder.mailboxId, {}
        finally:
            folder.close()

    async def _storeCall(self, d):
        try:
            return await mailstore.wait(d)
        except FolderExists:
            raise SetError("invalidProperties", "a Mailbox of that name exists", properties=["name"]) from None
        except (InvalidFolderName, FolderLimitExceeded) as e:
            raise SetError("invalidProperties", str(e)[:200], properties=["name"]) from None
        except NoSuchFolder:
            raise SetError("notFound") from None

    async def update(self, account, id, patch):
        records = await self.records(account)
        record = records.get(id)
        if record is None:
            raise SetError("notFound")
        bad = [k for k in patch if k not in ("name", "parentId", "isSubscribed", "sortOrder")]
        if bad:
            raise SetError("invalidProperties", "these properties cannot be changed", properties=bad)
        if "sortOrder" in patch and patch["sortOrder"] != record["sortOrder"]:
            raise SetError("invalidProperties", "sortOrder is set by the server", properties=["sortOrder"])
        old = record["_folder"]
        if "name" in patch or "parentId" in patch:
            if old == INBOX:
                raise SetError("forbidden", "INBOX cannot be renamed")
            name = patch.get("name", record["name"])
            self._checkName(name)
            parentId = patch.get("parentId", record["parentId"])
            if parentId == id:
                raise SetError("invalidProperties", "a Mailbox cannot be its own parent", properties=["parentId"])
            parent = await self._parentName(account, parentId)
            if parent is not None and (parent + SEPARATOR).startswith(old + SEPARATOR):
                raise SetError("invalidProperties", "a Mailbox cannot move under itself", properties=["parentId"])
            new = name if parent is None else parent + SEPARATOR + name
            if new != old:
                await self._storeCall(account.renameFolder(old, new))
                if record["isSubscribed"]:
                    await mailstore.wait(account.setSubscribed(old, False))
                    await mailstore.wait(account.setSubscribed(new, True))
                old = new
        if "isSubscribed" in patch:
            if not isinstance(patch["isSubscribed"], bool):
                raise SetError("invalidProperties", "isSubscribed must be a boolean", properties=["isSubscribed"])
            await mailstore.wait(account.setSubscribed(old, patch["isSubscribed"]))
        return None

    async def destroy(self, account, id):
        records = await self.records(account)
        record = records.get(id)
        if record is None:
            raise SetError("notFound")
        if record["_folder"] == INBOX:
            raise SetError("forbidden", "INBOX cannot be destroyed")
        # RFC 8621 s2.5: mailboxHasChild, mailboxHasEmail (unless onDestroyRemoveEmails).
        if any(r["parentId"] == id for r in records.values()):
            raise SetError("mailboxHasChild")
        if record["totalEmails"] and not self.onDestroyRemoveEmails:
            raise SetError("mailboxHasEmail")
        try:
            await self._storeCall(account.deleteFolder(record["_folder"]))
        except StoreError as e:
            raise SetError("forbidden", str(e)[:200]) from None
        if record["isSubscribed"]:
            await mailstore.wait(account.setSubscribed(record["_folder"], False))


TYPE = Mailboxes()


async def mailboxGet(call):
    properties = call.arguments.get("properties")
    threadCounts = not isinstance(properties, list) or bool({"totalThreads", "unreadThreads"} & set(
        p for p in properties if isinstance(p, str)))
    return await standard.standardGet(call, Mailboxes(cached=True, threadCounts=threadCounts))


async def mailboxChanges(call):
    """RFC 8621 s2.2: /changes plus updatedProperties (only counts changed: the store says)."""
    dataType = Mailboxes()
    answer = await standard.standardChanges(call, dataType)
    answer["updatedProperties"] = dataType.lastChanges.updatedProperties
    return answer


async def mailboxSet(call):
    remove = call.arguments.get("onDestroyRemoveEmails", False)
    if not isinstance(remove, bool):
        raise MethodError("invalidArguments", "onDestroyRemoveEmails must be a boolean")
    return await standard.standardSet(call, Mailboxes(remove, resolveId=call.resolveId))


def _usesSubscribed(filter) -> bool:
    if not isinstance(filter, dict):
        return False
    if "operator" in filter:
        return any(_usesSubscribed(c) for c in filter.get("conditions") or [])
    return "isSubscribed" in filter


async def mailboxQuery(call):
    answer = await standard.standardQuery(call, Mailboxes(cached=True))
    # Subscription changes are not journaled by the store: no /queryChanges with that filter.
    answer["canCalculateChanges"] = not _usesSubscribed(call.arguments.get("filter"))
    return answer


async def mailboxQueryChanges(call):
    """
    RFC 8620 s5.6 from the account's Mailbox changes: counts-only updates
    (the store's updatedProperties) move nothing; created Mailboxes are
    added at their index; a rename or a destroy (which may change other
    Mailboxes' name and parentId) and the isSubscribed filter are
    cannotCalculateChanges.
    """
    account = call.account()
    args = call.arguments
    filter, sort, calculateTotal = standard._queryArguments(call)
    since = args.get("sinceQueryState")
    if not isinstance(since, str):
        raise MethodError("invalidArguments", "sinceQueryState must be a string")
    maxChanges = standard._unsigned(args, "maxChanges", None, minimum=1)
    upToId = args.get("upToId")
    if upToId is not None and not isinstance(upToId, str):
        raise MethodError("invalidArguments", "upToId must be an id")
    if _usesSubscribed(filter):
        raise MethodError("cannotCalculateChanges", "subscriptions are not journaled; query again")
    changes = (await mailstore.changesSince(account.backend, since, None)).mailboxes
    renamed = changes.updated if changes.updatedProperties is None else []
    if changes.hasMoreChanges or changes.destroyed or renamed:
        raise MethodError("cannotCalculateChanges", "Mailboxes were renamed or destroyed; query again")
    _, ids = await Mailboxes(cached=True).query(account.backend, filter, sort)
    removed, added = standard.queryChangesFromUpdates(ids, changes.created, [], [])
    if maxChanges is not None and len(removed) + len(added) > maxChanges:
        raise MethodError("tooManyChanges")
    answer = {"accountId": account.id, "oldQueryState": since, "newQueryState": changes.newState,
              "removed": removed, "added": added}
    if calculateTotal:
        answer["total"] = len(ids)
    return answer


def register(registry):
    # RFC 8621 s1.3.1: the session value is empty; the account's carries the limits.
    registry.capability(MAIL, {}, accountValue=accountCapability)
    registry.method("Mailbox/get", mailboxGet, MAIL)
    registry.method("Mailbox/changes", mailboxChanges, MAIL)
    registry.method("Mailbox/query", mailboxQuery, MAIL)
    registry.method("Mailbox/queryChanges", mailboxQueryChanges, MAIL)
    registry.method("Mailbox/set", mailboxSet, MAIL, mutates=True)
