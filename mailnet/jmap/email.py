"""
RFC 8621 s4: the Email data type.  Pure: the store is read through
:mod:`mailnet.jmap.mailstore`.

* Email/query (s4.4) runs on the store's message list (``listEmails``,
  received date order): with no filter but ``inMailbox`` and no
  ``collapseThreads`` the page is cut by the store itself; other filters
  look at the list fields (``emailSummaries``), never at message files.
* Email/get (s4.2): the list properties come from ``emailSummaries`` (no
  message file opened); the others (headers, body) from the message,
  scanned once by the shared MIME code (:mod:`mailnet.jmap.emailbody`).
* Email/changes (s4.3) from the store's account changes; Email/set (s4.6)
  changes keywords (flags), mailboxIds (a move) and destroys (expunge).
"""

from __future__ import annotations

import calendar
import re
import time

from mailnet.jmap import emailbody, emailcreate, mailstore, standard
from mailnet.jmap.errors import MethodError, SetError
from mailnet.jmap.mailbox import MAIL, checkFilter, evaluate

LIST_PROPERTIES = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
                   "from", "to", "cc", "subject", "sentAt", "hasAttachment", "preview")
HEADER_PROPERTIES = ("inReplyTo", "references", "sender", "bcc", "replyTo", "headers")
BODY_PROPERTIES = ("bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues")
PROPERTIES = LIST_PROPERTIES + HEADER_PROPERTIES + BODY_PROPERTIES
# RFC 8621 s4.2: the default properties of Email/get.
DEFAULT_PROPERTIES = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
                      "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
                      "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments")

QUERY_FILTERS = {"inMailbox", "inMailboxOtherThan", "before", "after", "minSize", "maxSize",
                 "hasKeyword", "notKeyword", "hasAttachment", "from", "to", "cc", "subject"}
# Left out (unsupportedFilter): text, body, bcc, header (they need the message
# bodies or fields the list index does not keep), allInThreadHaveKeyword,
# someInThreadHaveKeyword, noneInThreadHaveKeyword.

UTC_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z\Z")


def utcDate(seconds) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


def parseUTCDate(value):
    match = UTC_DATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise MethodError("invalidArguments", "a date must be a UTCDate (RFC 3339, Z)")
    try:
        return calendar.timegm(tuple(int(g) for g in match.groups()) + (0, 0, 0))
    except (ValueError, OverflowError):
        raise MethodError("invalidArguments", "a date must be a UTCDate (RFC 3339, Z)") from None


def addresses(pairs):
    if not pairs:
        return None
    return [{"name": name, "email": email} for name, email in pairs]


def listRecord(summary) -> dict:
    """RFC 8621 s4.1: the list properties of one EmailSummary."""
    return {
        "id": summary.emailId,
        "blobId": summary.emailId,  # the raw message; see blobsource.py
        "threadId": summary.threadId or summary.emailId,
        "mailboxIds": {summary.mailboxId: True},
        "keywords": mailstore.keywordsOf(summary.flags),
        "size": summary.size,
        "receivedAt": utcDate(summary.receivedAt),
        "messageId": [summary.messageId] if summary.messageId else None,
        "from": addresses(summary.sender),
        "to": addresses(summary.to),
        "cc": addresses(summary.cc),
        "subject": summary.subject,
        "sentAt": utcDate(summary.sentAt),
        "hasAttachment": summary.hasAttachment,
        "preview": summary.preview,
    }


def _contains(pairs, text):
    text = text.lower()
    return any(text in (name or "").lower() or text in email.lower() for name, email in pairs)


def _matches(summary, condition) -> bool:
    """RFC 8621 s4.4.1 on the list fields."""
    for key, value in condition.items():
        if key == "inMailbox":
            ok = summary.mailboxId == value
        elif key == "inMailboxOtherThan":
            ok = summary.mailboxId not in value
        elif key == "before":
            ok = summary.receivedAt < parseUTCDate(value)
        elif key == "after":
            ok = summary.receivedAt >= parseUTCDate(value)
        elif key == "minSize":
            ok = summary.size >= value
        elif key == "maxSize":
            ok = summary.size < value
        elif key == "hasKeyword":
            ok = value.lower() in mailstore.keywordsOf(summary.flags)
        elif key == "notKeyword":
            ok = value.lower() not in mailstore.keywordsOf(summary.flags)
        elif key == "hasAttachment":
            ok = summary.hasAttachment == value
        elif key in ("from", "to", "cc"):
            ok = _contains(getattr(summary, "sender" if key == "from" else key), value)
        else:  # subject
            ok = value.lower() in summary.subject.lower()
        if not ok:
            return False
    return True


def _checkValues(filter):
    """invalidArguments for a filter value of the wrong type (before anything is read)."""
    if filter is None:
        return
    if "operator" in filter:
        for c in filter.get("conditions") or []:
            if isinstance(c, dict):
                _checkValues(c)
        return
    for key, value in filter.items():
        if key in ("inMailbox", "from", "to", "cc", "subject") and not isinstance(value, str):
            raise MethodError("invalidArguments", f"{key} must be a string")
        if key == "inMailboxOtherThan" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise MethodError("invalidArguments", "inMailboxOtherThan must be an array of ids")
        if key in ("before", "after"):
            parseUTCDate(value)
        if key in ("minSize", "maxSize") and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise MethodError("invalidArguments", f"{key} must be an unsigned integer")
        if key in ("hasKeyword", "notKeyword") and not mailstore.isKeyword(value):
            raise MethodError("invalidArguments", f"{key} must be a keyword")
        if key == "hasAttachment" and not isinstance(value, bool):
            raise MethodError("invalidArguments", "hasAttachment must be a boolean")


def _newestFirst(sort) -> bool:
    if not sort:
        return True  # RFC 8621 s4.4.2 leaves the default to the server: newest first
    if len(sort) > 1 or sort[0]["property"] != "receivedAt":
        bad = [s["property"] for s in sort if s["property"] != "receivedAt"] or ["receivedAt twice"]
        raise MethodError("unsupportedSort", f"only receivedAt is supported, not {bad[0][:100]}")
    if "collation" in sort[0]:
        raise MethodError("unsupportedSort", "receivedAt has no collation")
    ascending = sort[0].get("isAscending", True)
    if not isinstance(ascending, bool):
        raise MethodError("invalidArguments", "isAscending must be a boolean")
    return not ascending


async def summaries(account, ids) -> dict:
    return await mailstore.wait(mailstore.need(account, "emailSummaries")(ids))


async def emailQuery(call):
    """RFC 8621 s4.4 (and RFC 8620 s5.5 position/anchor/limit/calculateTotal)."""
    account = call.account()
    args = call.arguments
    filter, sort, calculateTotal = standard._queryArguments(call)
    checkFilter(filter, QUERY_FILTERS)
    _checkValues(filter)
    newestFirst = _newestFirst(sort)
    collapse = args.get("collapseThreads", False)
    if not isinstance(collapse, bool):
        raise MethodError("invalidArguments", "collapseThreads must be a boolean")
    position = standard._int(args, "position", 0)
    anchor = args.get("anchor")
    if anchor is not None and not isinstance(anchor, str):
        raise MethodError("invalidArguments", "anchor must be an id")
    anchorOffset = standard._int(args, "anchorOffset", 0)
    limit = standard._unsigned(args, "limit", None)
    store = account.backend
    listEmails = mailstore.need(store, "listEmails")
    state = await mailstore.currentState(store)
    answer = {"accountId": account.id, "queryState": state, "canCalculateChanges": False, "collapseThreads": collapse}
    simple = filter is None or (set(filter) == {"inMailbox"})
    mailboxId = filter.get("inMailbox") if simple and filter else None
    if simple and not collapse and anchor is None and position >= 0:
        # The fast path: the store cuts the page from its index.
        page = await mailstore.wait(listEmails(mailboxId, position, limit, newestFirst))
        answer.update(position=min(position, page.total), ids=list(page.ids))
        if calculateTotal:
            answer["total"] = page.total
        return answer
    everything = await mailstore.wait(listEmails(mailboxId, 0, None, newestFirst))
    ids = list(everything.ids)
    if not simple or collapse:
        # Only what the answer needs: without a total or an anchor, stop at position + limit matches.
        need = position + limit if (limit is not None and anchor is None and position >= 0
                                    and not calculateTotal) else None
        ids = await _filtered(store, ids, filter, collapse, need)
    total = len(ids)
    if anchor is not None:
        try:
            index = ids.index(call.resolveId(anchor))
        except ValueError:
            raise MethodError("anchorNotFound") from None
        start = max(0, index + anchorOffset)
    elif position < 0:
        start = max(0, total + position)
    else:
        start = position
    end = total if limit is None else start + limit
    answer.update(position=min(start, total), ids=ids[start:end])
    if calculateTotal:
        answer["total"] = total
    return answer


CHUNK = 500  # list fields asked of the store at a time by a filtered query


async def _filtered(store, ids, filter, collapse, need):
    """The ids (in order) whose list fields match ``filter``; the first of each thread with ``collapse``."""
    out, seen = [], set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        found = await summaries(store, chunk)
        for i in chunk:
            summary = found.get(i)
            if summary is None or not evaluate(filter, lambda c, s=summary: _matches(s, c)):
                continue
            if collapse:
                # RFC 8621 s4.4.3: only the first Email of each Thread in the sorted results.
                thread = summary.threadId or i
                if thread in seen:
                    continue
                seen.add(thread)
            out.append(i)
        if need is not None and len(out) >= need:
            break
    return out


async def emailQueryChanges(call):
    # RFC 8620 s5.6: the server keeps no old query results.
    standard._queryArguments(call)
    call.account()
    raise MethodError("cannotCalculateChanges", "query results are not kept; query again")


class Emails:
    name = "Email"
    properties = PROPERTIES
    defaultProperties = DEFAULT_PROPERTIES

    def __init__(self, wanted=(), bodyOptions=None, resolveId=None, creator=None):
        self.wanted = set(wanted)
        self.bodyOptions = bodyOptions
        self.resolveId = resolveId  # "#creationId" of a Mailbox made earlier in the request
        self.creator = creator  # drafts from parts: mailnet.jmap.emailcreate.Creator

    async def state(self, account):
        return await mailstore.currentState(account)

    def allIds(self, account):
        # RFC 8621 s4.2: ids null is allowed but the whole account is too much.
        raise MethodError("requestTooLarge", "Email/get needs ids")

    async def read(self, account, ids):
        found = await summaries(account, ids)
        out = {i: listRecord(s) for i, s in found.items()}
        rest = self.wanted - set(LIST_PROPERTIES)
        if rest:
            for i, s in found.items():
                out[i].update(await emailbody.fromMessage(account, s, rest, self.bodyOptions))
        return out

    async def changes(self, account, sinceState, maxChanges):
        c = (await mailstore.changesSince(account, sinceState, maxChanges)).emails
        return standard.Changes(c.oldState, c.newState, c.hasMoreChanges, list(c.created),
                                list(c.updated), list(c.destroyed))

    # /set (RFC 8621 s4.6): create (emailcreate.py), keywords, mailboxIds, destroy.

    async def create(self, account, record):
        if self.creator is None:
            raise SetError("forbidden", "creating Emails is not supported here")
        return await self.creator.create(account, record)

    async def _locate(self, account, id):
        where = await mailstore.wait(mailstore.need(account, "findEmail")(id))
        if where is None:
            raise SetError("notFound")
        return where

    async def update(self, account, id, patch):
        folderName, uid = await self._locate(account, id)
        folder = await mailstore.openFolder(account, folderName)
        try:
            info = folder.get(uid)
            if info is None:
                raise SetError("notFound")
            current = {"keywords": mailstore.keywordsOf(info.flags), "mailboxIds": {folder.mailboxId: True}}
            bad = [k for k in patch if k.split("/")[0] not in current]
            if bad:
                raise SetError("invalidProperties", "only keywords and mailboxIds can be changed",
                               properties=[k.split("/")[0] for k in bad])
            if self.resolveId is not None:
                patch = {self._resolvePath(k): v for k, v in patch.items()}
                if isinstance(patch.get("mailboxIds"), dict):
                    patch["mailboxIds"] = {self._resolve(k): v for k, v in patch["mailboxIds"].items()}
            new = standard.applyPatch(current, patch)
            keywords, mailboxIds = new.get("keywords", {}), new.get("mailboxIds", {})
            if not isinstance(keywords, dict) or not all(mailstore.isKeyword(k) and v is True
                                                          for k, v in keywords.items()):
                raise SetError("invalidProperties", "keywords must map keywords to true", properties=["keywords"])
            if not isinstance(mailboxIds, dict) or not all(v is True for v in mailboxIds.values()):
                raise SetError("invalidProperties", "mailboxIds must map ids to true", properties=["mailboxIds"])
            if len(mailboxIds) > 1:
                # RFC 8621 s4.6: maxMailboxesPerEmail is 1 here.
                raise SetError("tooManyMailboxes", "an Email is in exactly one Mailbox here",
                               properties=["mailboxIds"])
            if not mailboxIds:
                raise SetError("invalidProperties", "an Email must be in a Mailbox", properties=["mailboxIds"])
            target = next(iter(mailboxIds))
            if keywords != current["keywords"]:
                kept = {f for f in info.flags if f.lower() in mailstore.NOT_KEYWORDS}
                flags = kept | {mailstore.flagOf(k) for k in keywords}
                await mailstore.wait(folder.setFlags([uid], flags, "set"))
            if target != folder.mailboxId:
                boxes = await mailstore.mailboxes(account, withCounts=False)
                destination = next((b.name for b in boxes if b.mailboxId == target), None)
                if destination is None:
                    raise SetError("invalidProperties", "no such Mailbox", properties=["mailboxIds"])
                dest = await mailstore.openFolder(account, destination)
                try:
                    await mailstore.wait(folder.moveTo([uid], dest))
                finally:
                    dest.close()
        finally:
            folder.close()
        return None

    def _resolve(self, mailboxId):
        try:
            return self.resolveId(mailboxId)
        except MethodError:
            raise SetError("invalidProperties", "unknown creation id", properties=["mailboxIds"]) from None

    def _resolvePath(self, key):
        if key.startswith("mailboxIds/#"):
            return "mailboxIds/" + self._resolve(key[len("mailboxIds/"):])
        return key

    async def destroy(self, account, id):
        folderName, uid = await self._locate(account, id)
        folder = await mailstore.openFolder(account, folderName)
        try:
            if folder.get(uid) is None:
                raise SetError("notFound")
            await mailstore.wait(folder.expunge([uid]))
        finally:
            folder.close()


def bodyOptions(args):
    """RFC 8621 s4.2: fetchTextBodyValues, fetchHTMLBodyValues, fetchAllBodyValues, maxBodyValueBytes."""
    out = {}
    for key in ("fetchTextBodyValues", "fetchHTMLBodyValues", "fetchAllBodyValues"):
        value = args.get(key, False)
        if not isinstance(value, bool):
            raise MethodError("invalidArguments", f"{key} must be a boolean")
        out[key] = value
    out["maxBodyValueBytes"] = standard._unsigned(args, "maxBodyValueBytes", 0)
    bodyProperties = args.get("bodyProperties")
    if bodyProperties is not None and not (isinstance(bodyProperties, list)
                                           and all(isinstance(p, str) for p in bodyProperties)):
        raise MethodError("invalidArguments", "bodyProperties must be an array of strings")
    out["bodyProperties"] = bodyProperties
    return out


async def emailGet(call):
    args = call.arguments
    properties = args.get("properties")
    wanted = DEFAULT_PROPERTIES if properties is None else properties
    if not isinstance(wanted, (list, tuple)) or not all(isinstance(p, str) for p in wanted):
        raise MethodError("invalidArguments", "properties must be an array of strings")
    dataType = Emails(wanted, bodyOptions(args))
    dataType.properties = emailbody.KnownProperties(PROPERTIES)
    return await standard.standardGet(call, dataType)


def register(registry):
    registry.method("Email/get", emailGet, MAIL)
    registry.method("Email/changes", lambda call: standard.standardChanges(call, Emails()), MAIL)
    registry.method("Email/query", emailQuery, MAIL)
    registry.method("Email/queryChanges", emailQueryChanges, MAIL)
    registry.method("Email/set", lambda call: standard.standardSet(
        call, Emails(resolveId=call.resolveId, creator=emailcreate.Creator(call))), MAIL, mutates=True)
