"""
RFC 8621 s4.4 Email/query and s4.5 Email/queryChanges.  Pure: the store is
read through :mod:`mailnet.jmap.mailstore`.

The query walks the store's message list (``listEmails``, received date
order) and looks at as little as each message needs:

1. the list fields (``emailSummaries``, the list index: no message file)
   decide the conditions on mailboxes, dates, size, keywords, attachments,
   From/To/Cc/Subject;
2. the thread (``threadEmails`` and their keywords, once per thread) only
   for the ``*InThreadHaveKeyword`` conditions and sorts;
3. the message file only for ``text``, ``body``, ``bcc`` and ``header``,
   and only when steps 1-2 left the answer open (a three-valued
   evaluation: a condition that needs what is not loaded is "unknown").

Text matching is IMAP SEARCH's (RFC 8621 s4.4.1 lets the server choose):
case-insensitive substring on decoded header text and decoded body text
(:mod:`mailnet.mail.textsearch`, the code IMAP uses).  With no filter but
``inMailbox``, the receivedAt sort and no ``collapseThreads`` or anchor,
the page is cut by the store's index as before.
"""

from __future__ import annotations

import re

from mailnet.jmap import mailstore, standard
from mailnet.jmap.email import parseUTCDate
from mailnet.jmap.errors import MethodError
from mailnet.jmap.mailbox import MAIL
from mailnet.mail.textsearch import MessageText, pairsText
from mailnet.mail.threading import baseSubject

# RFC 8621 s4.4.1 FilterCondition properties, by what they need.
LIST_FILTERS = {"inMailbox", "inMailboxOtherThan", "before", "after", "minSize", "maxSize", "hasKeyword",
                "notKeyword", "hasAttachment", "from", "to", "cc", "subject"}
THREAD_FILTERS = {"allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword"}
CONTENT_FILTERS = {"text", "body", "bcc", "header"}
FILTERS = LIST_FILTERS | THREAD_FILTERS | CONTENT_FILTERS
# RFC 8621 s4.4.2 sort properties (the capability's emailQuerySortOptions).
SORTS = ("receivedAt", "sentAt", "size", "from", "to", "subject", "hasKeyword", "allInThreadHaveKeyword",
         "someInThreadHaveKeyword")
KEYWORD_SORTS = {"hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"}
# RFC 8620 s5.5 / RFC 4790: the collations of the core capability.
COLLATIONS = {"i;ascii-casemap", "i;unicode-casemap", "i;ascii-numeric"}
# Filters on properties that never change once a message exists (upToId applies, RFC 8620 s5.6).
IMMUTABLE_FILTERS = {"before", "after", "minSize", "maxSize", "hasAttachment", "from", "to", "cc", "subject",
                     "text", "body", "bcc", "header"}
IMMUTABLE_SORTS = {"receivedAt", "sentAt", "size", "from", "to", "subject"}

MAX_DEPTH = 20  # FilterOperator nesting (a request is at most maxSizeRequest anyway)
MAX_TEXT = 1000  # characters of a search string
CHUNK = 500  # list fields asked of the store at a time
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,200}\Z")  # RFC 5322 s3.6.8 ftext


class Filter:
    """A checked filter: a tree of ``("AND"|"OR"|"NOT", [nodes])`` and ``(name, value)`` conditions."""

    def __init__(self, tree, names):
        self.tree = tree
        self.names = names  # every condition name used

    @property
    def needsThreads(self):
        return bool(self.names & THREAD_FILTERS)

    @property
    def needsContent(self):
        return bool(self.names & CONTENT_FILTERS)

    @property
    def onlyInMailbox(self):
        """No filter, or ``{"inMailbox": id}`` alone (the store's index cuts the page)."""
        t = self.tree
        return t is None or (t[0] == "AND" and (not t[1] or (len(t[1]) == 1 and t[1][0][0] == "inMailbox")))


def parseFilter(filter) -> Filter:
    """RFC 8620 s5.5 / RFC 8621 s4.4.1: check a filter (unsupportedFilter, invalidArguments) and normalize it."""
    names = set()
    if filter is None:
        return Filter(None, names)
    return Filter(_node(filter, names, 0), names)


def _node(filter, names, depth):
    if not isinstance(filter, dict):
        raise MethodError("invalidArguments", "a filter must be an object")
    if depth > MAX_DEPTH:
        raise MethodError("unsupportedFilter", f"filters nested deeper than {MAX_DEPTH}")
    if "operator" in filter:
        operator, conditions = filter.get("operator"), filter.get("conditions")
        if operator not in ("AND", "OR", "NOT") or not isinstance(conditions, list) or set(filter) - {
                "operator", "conditions"}:
            raise MethodError("unsupportedFilter", "a FilterOperator needs operator AND/OR/NOT and conditions")
        return (operator, [_node(c, names, depth + 1) for c in conditions])
    unknown = set(filter) - FILTERS
    if unknown:
        raise MethodError("unsupportedFilter", f"unsupported filter: {', '.join(sorted(unknown))[:200]}")
    names.update(filter)
    # A FilterCondition's properties are ANDed; the cheap ones first.
    order = sorted(filter, key=lambda k: (k in THREAD_FILTERS) + 2 * (k in CONTENT_FILTERS))
    return ("AND", [(key, _value(key, filter[key])) for key in order])


def _text(key, value):
    if not isinstance(value, str):
        raise MethodError("invalidArguments", f"{key} must be a string")
    if len(value) > MAX_TEXT:
        raise MethodError("invalidArguments", f"{key} is longer than {MAX_TEXT} characters")
    return value.casefold()


def _value(key, value):
    if key == "inMailbox":
        if not isinstance(value, str):
            raise MethodError("invalidArguments", "inMailbox must be an id")
        return value
    if key == "inMailboxOtherThan":
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise MethodError("invalidArguments", "inMailboxOtherThan must be an array of ids")
        return frozenset(value)
    if key in ("before", "after"):
        return parseUTCDate(value)
    if key in ("minSize", "maxSize"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MethodError("invalidArguments", f"{key} must be an unsigned integer")
        return value
    if key in ("hasKeyword", "notKeyword") or key in THREAD_FILTERS:
        if not mailstore.isKeyword(value):
            raise MethodError("invalidArguments", f"{key} must be a keyword")
        return value.lower()
    if key == "hasAttachment":
        if not isinstance(value, bool):
            raise MethodError("invalidArguments", "hasAttachment must be a boolean")
        return value
    if key == "header":
        # RFC 8621 s4.4.1: [name] (the field exists) or [name, text] (its value contains text).
        if not (isinstance(value, list) and 1 <= len(value) <= 2 and all(isinstance(v, str) for v in value)):
            raise MethodError("invalidArguments", "header must be [name] or [name, value]")
        if not _FIELD_NAME.match(value[0]):
            raise MethodError("invalidArguments", "header: not a header field name")
        return (value[0], _text("header", value[1]) if len(value) == 2 else None)
    return _text(key, value)  # from to cc bcc subject text body


class Candidate:
    """One message being looked at: its list fields, and its thread and text once loaded."""

    __slots__ = ("summary", "keywords", "thread", "text", "_addresses")

    def __init__(self, summary):
        self.summary = summary
        self.keywords = mailstore.keywordsOf(summary.flags)
        self.thread = None  # [keywords of each message of the thread] once loaded
        self.text = None  # MessageText once loaded
        self._addresses = {}

    def addresses(self, key):
        found = self._addresses.get(key)
        if found is None:
            found = self._addresses[key] = pairsText(getattr(self.summary, "sender" if key == "from" else key))
        return found


def evaluate(node, c: Candidate):
    """True, False, or None (unknown: needs the thread or the text, not loaded yet)."""
    op = node[0]
    if op == "AND":
        result = True
        for child in node[1]:
            value = evaluate(child, c)
            if value is False:
                return False
            if value is None:
                result = None
        return result
    if op in ("OR", "NOT"):
        result = False
        for child in node[1]:
            value = evaluate(child, c)
            if value is True:
                result = True
                break
            if value is None:
                result = None
        if op == "NOT" and result is not None:
            return not result
        return result
    return _condition(op, node[1], c)


def _condition(key, value, c):
    s = c.summary
    if key == "inMailbox":
        return s.mailboxId == value
    if key == "inMailboxOtherThan":
        return s.mailboxId not in value  # one mailbox per Email here
    if key == "before":
        return s.receivedAt < value
    if key == "after":
        return s.receivedAt >= value
    if key == "minSize":
        return s.size >= value
    if key == "maxSize":
        return s.size < value
    if key == "hasKeyword":
        return value in c.keywords
    if key == "notKeyword":
        return value not in c.keywords
    if key == "hasAttachment":
        return s.hasAttachment == value
    if key in ("from", "to", "cc"):
        return value in c.addresses(key)
    if key == "subject":
        return value in s.subject.casefold()
    if key in THREAD_FILTERS:
        if c.thread is None:
            return None
        having = [value in k for k in c.thread]
        if key == "allInThreadHaveKeyword":
            return all(having)
        if key == "someInThreadHaveKeyword":
            return any(having)
        return not any(having)
    if key == "text":
        # RFC 8621 s4.4.1: From, To, Cc, Bcc, Subject, or a text part of the body.
        if value in s.subject.casefold() or any(value in c.addresses(k) for k in ("from", "to", "cc")):
            return True
        if c.text is None:
            return None
        return c.text.bodyContains(value) or c.text.addressContains("Bcc", value)
    if c.text is None:
        return None
    if key == "body":
        return c.text.bodyContains(value)
    if key == "bcc":
        return c.text.addressContains("Bcc", value)
    name, needle = value  # header
    return c.text.headerContains(name, needle)


# Sorting (RFC 8621 s4.4.2)

class Sort:
    def __init__(self, comparators):
        self.comparators = comparators  # [(property, keyword, ascending, collation)]

    @property
    def receivedAtOnly(self):
        return len(self.comparators) == 1 and self.comparators[0][0] == "receivedAt"

    @property
    def newestFirst(self):
        return not self.comparators[0][2] if self.receivedAtOnly else True

    @property
    def needsThreads(self):
        return any(p in ("allInThreadHaveKeyword", "someInThreadHaveKeyword") for p, *_ in self.comparators)

    @property
    def names(self):
        return {p for p, *_ in self.comparators}


def parseSort(sort) -> Sort:
    if not sort:
        return Sort([("receivedAt", None, False, None)])  # RFC 8621 s4.4.2 leaves it to us: newest first
    out = []
    for comparator in sort:
        prop = comparator["property"]
        if prop not in SORTS:
            raise MethodError("unsupportedSort", f"cannot sort by {prop[:100]}")
        # Other Comparator properties are ignored: jmapc sends its query arguments in each one.
        ascending = comparator.get("isAscending", True)
        if not isinstance(ascending, bool):
            raise MethodError("invalidArguments", "isAscending must be a boolean")
        collation = comparator.get("collation")
        if collation is not None and collation not in COLLATIONS:
            raise MethodError("unsupportedSort", f"unknown collation {str(collation)[:100]}")
        keyword = comparator.get("keyword")
        if prop in KEYWORD_SORTS:
            if not mailstore.isKeyword(keyword):
                raise MethodError("invalidArguments", f"sorting by {prop} needs a keyword")
            keyword = keyword.lower()
        elif keyword is not None:
            raise MethodError("invalidArguments", f"{prop} takes no keyword")
        out.append((prop, keyword, ascending, collation))
    return Sort(out)


def _collate(text, collation):
    if collation == "i;ascii-numeric":
        # RFC 4790 s9.1: the leading digits as a number; a string without them sorts last.
        digits = re.match(r"\d*", text).group()
        return (0, int(digits)) if digits else (1, 0)
    if collation == "i;ascii-casemap":
        return text.translate(_ASCII_LOWER)
    return text.casefold()  # i;unicode-casemap, the default (RFC 5051, approximated by casefolding)


_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


def _firstAddress(pairs):
    # RFC 8621 s4.4.2: the name of the first address, or its email when it has no name.
    if not pairs:
        return ""
    name, address = pairs[0]
    return name or address or ""


def sortKey(prop, keyword, collation, c: Candidate):
    s = c.summary
    if prop == "receivedAt":
        return s.receivedAt
    if prop == "sentAt":
        return s.sentAt if s.sentAt is not None else s.receivedAt  # no Date: the arrival (RFC 5256 s2.2)
    if prop == "size":
        return s.size
    if prop in ("from", "to"):
        return _collate(_firstAddress(s.sender if prop == "from" else s.to), collation)
    if prop == "subject":
        return _collate(baseSubject(s.subject)[0], collation)  # RFC 8621 s4.4.2: the RFC 5256 base subject
    if prop == "hasKeyword":
        return keyword in c.keywords
    having = [keyword in k for k in c.thread or ()]
    return all(having) if prop == "allInThreadHaveKeyword" else any(having)


def ordered(candidates, sort: Sort):
    """Stable sorts from the last comparator to the first, on top of the list's order (newest first, id)."""
    out = list(candidates)
    for prop, keyword, ascending, collation in reversed(sort.comparators):
        out.sort(key=lambda c: sortKey(prop, keyword, collation, c), reverse=not ascending)
    return out


# Reading what the conditions need

class Reader:
    """What one query reads from the store, each thing at most once."""

    def __init__(self, store):
        self.store = store
        self.threads = {}  # threadId -> [keywords]
        self.folders = {}  # folder name -> open IFolder (opened once per query; close() closes them)

    def close(self):
        for folder in self.folders.values():
            folder.close()
        self.folders.clear()

    async def summaries(self, ids):
        return await mailstore.wait(mailstore.need(self.store, "emailSummaries")(ids))

    async def loadThread(self, c: Candidate):
        threadId = c.summary.threadId
        if threadId is None:
            c.thread = [c.keywords]
            return
        found = self.threads.get(threadId)
        if found is None:
            ids = await mailstore.wait(mailstore.need(self.store, "threadEmails")(threadId))
            members = await self.summaries(ids) if ids else {}
            found = [mailstore.keywordsOf(m.flags) for m in members.values()]
            if c.summary.emailId not in members:
                found.append(c.keywords)  # its thread id not asked yet (docs/store.md "Thread ids")
            self.threads[threadId] = found
        c.thread = found

    async def loadText(self, c: Candidate):
        s = c.summary
        folder = self.folders.get(s.folder)
        if folder is None:
            folder = self.folders[s.folder] = await mailstore.openFolder(self.store, s.folder)
        f = await mailstore.wait(folder.openMessage(s.uid))
        try:
            # The decoded text of at most TEXT_LIMIT bytes; the rest of a huge message is not searched.
            c.text = MessageText(f.read(TEXT_LIMIT))
        finally:
            f.close()

    async def matches(self, filter: Filter, c: Candidate) -> bool:
        if filter.tree is None:
            return True
        result = evaluate(filter.tree, c)
        if result is None and filter.needsThreads and c.thread is None:
            await self.loadThread(c)
            result = evaluate(filter.tree, c)
        if result is None:
            await self.loadText(c)
            result = evaluate(filter.tree, c)
        return bool(result)


TEXT_LIMIT = 16 * 1024 * 1024  # bytes of a message searched (IMAP's DECODE_LIMIT, docs/jmap.md)


async def run(store, filter: Filter, sort: Sort, collapse, need=None):
    """
    The query's ids in order.  ``need``: stop once that many are found
    (only when the order is the list's own, receivedAt).
    """
    listEmails = mailstore.need(store, "listEmails")
    inMailbox = _topMailbox(filter)
    everything = await mailstore.wait(listEmails(inMailbox, 0, None, sort.newestFirst))
    ids = list(everything.ids)
    reader = Reader(store)
    try:
        return await _walk(reader, ids, filter, sort, collapse, need)
    finally:
        reader.close()


async def _walk(reader, ids, filter, sort, collapse, need):
    streaming = sort.receivedAtOnly
    found, seen = [], set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        summaries = await reader.summaries(chunk)
        for i in chunk:
            summary = summaries.get(i)
            if summary is None:
                continue
            c = Candidate(summary)
            matched = await reader.matches(filter, c)
            c.text = None  # the message's bytes are not kept past its test (a sort needs only the list fields)
            if not matched:
                continue
            if streaming and collapse:
                thread = summary.threadId or i
                if thread in seen:
                    continue
                seen.add(thread)
            found.append(c)
            if streaming and need is not None and len(found) >= need:
                return [c.summary.emailId for c in found]  # no message file read past the page
    if streaming:
        return [c.summary.emailId for c in found]
    if sort.needsThreads:
        for c in found:
            if c.thread is None:
                await reader.loadThread(c)
    out = []
    for c in ordered(found, sort):
        if collapse:
            # RFC 8621 s4.4.3: only the first Email of each Thread in the sorted results.
            thread = c.summary.threadId or c.summary.emailId
            if thread in seen:
                continue
            seen.add(thread)
        out.append(c.summary.emailId)
    return out


def _topMailbox(filter: Filter):
    """The inMailbox every match must have (a top-level AND condition), for the store to list only that folder."""
    tree = filter.tree
    if tree is None or tree[0] != "AND":
        return None
    for child in tree[1]:
        if child[0] == "inMailbox":
            return child[1]
        if child[0] == "AND":
            for grandchild in child[1]:
                if grandchild[0] == "inMailbox":
                    return grandchild[1]
    return None


def _arguments(call):
    args = call.arguments
    filter, sort, calculateTotal = standard._queryArguments(call)
    parsedFilter = parseFilter(filter)
    parsedSort = parseSort(sort)
    collapse = args.get("collapseThreads", False)
    if not isinstance(collapse, bool):
        raise MethodError("invalidArguments", "collapseThreads must be a boolean")
    return parsedFilter, parsedSort, collapse, calculateTotal


async def emailQuery(call):
    """RFC 8621 s4.4 (and RFC 8620 s5.5 position/anchor/limit/calculateTotal)."""
    account = call.account()
    args = call.arguments
    filter, sort, collapse, calculateTotal = _arguments(call)
    position = standard._int(args, "position", 0)
    anchor = args.get("anchor")
    if anchor is not None and not isinstance(anchor, str):
        raise MethodError("invalidArguments", "anchor must be an id")
    anchorOffset = standard._int(args, "anchorOffset", 0)
    limit = standard._unsigned(args, "limit", None)
    store = account.backend
    state = await mailstore.currentState(store)
    answer = {"accountId": account.id, "queryState": state,
              "canCalculateChanges": canCalculate(filter, sort, collapse),
              "collapseThreads": collapse}
    if filter.onlyInMailbox and sort.receivedAtOnly and not collapse and anchor is None and position >= 0:
        # The fast path: the store cuts the page from its index.
        page = await mailstore.wait(mailstore.need(store, "listEmails")(_topMailbox(filter), position, limit,
                                                                        sort.newestFirst))
        answer.update(position=min(position, page.total), ids=list(page.ids))
        if calculateTotal:
            answer["total"] = page.total
        return answer
    # Only what the answer needs: without a total or an anchor, stop at position + limit matches.
    need = position + limit if (limit is not None and anchor is None and position >= 0
                                and not calculateTotal) else None
    ids = await run(store, filter, sort, collapse, need)
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


def register(registry):
    registry.method("Email/query", emailQuery, MAIL)
    registry.method("Email/queryChanges", emailQueryChanges, MAIL)


def canCalculate(filter: Filter, sort: Sort, collapse) -> bool:
    """
    RFC 8620 s5.6: whether /queryChanges can answer.  An Email's place in a
    result changes only when the Email itself changes (its keywords, its
    mailbox; the content never), except with the thread conditions and
    collapseThreads, where another Email of the thread decides.
    """
    return not collapse and not filter.needsThreads and not sort.needsThreads


async def emailQueryChanges(call):
    """
    RFC 8620 s5.6 from the account's changes: every Email created, updated
    or destroyed since ``sinceQueryState`` is removed (if it was there: the
    RFC lets the server list extra ids), and added again at its index when
    it is in the new result.
    """
    account = call.account()
    args = call.arguments
    filter, sort, collapse, calculateTotal = _arguments(call)
    since = args.get("sinceQueryState")
    if not isinstance(since, str):
        raise MethodError("invalidArguments", "sinceQueryState must be a string")
    maxChanges = standard._unsigned(args, "maxChanges", None, minimum=1)
    upToId = args.get("upToId")
    if upToId is not None and not isinstance(upToId, str):
        raise MethodError("invalidArguments", "upToId must be an id")
    if not canCalculate(filter, sort, collapse):
        raise MethodError("cannotCalculateChanges", "the result depends on other Emails of the thread; query again")
    store = account.backend
    for _ in range(3):
        # The changes up to a state, then the result: newQueryState is that state, so a change made
        # meanwhile shows again next time (safe).  Running the query may itself move the state (thread
        # ids worked out for the first time): then once more, so that the state is the result's.
        changes = (await mailstore.changesSince(store, since, None)).emails
        if changes.hasMoreChanges:
            raise MethodError("cannotCalculateChanges", "too many changes; query again")
        ids = await run(store, filter, sort, False)
        if await mailstore.currentState(store) == changes.newState:
            break
    newState = changes.newState
    immutable = filter.names <= IMMUTABLE_FILTERS and sort.names <= IMMUTABLE_SORTS
    removed, added = standard.queryChangesFromUpdates(
        ids, created=changes.created, updated=changes.updated, destroyed=changes.destroyed,
        upToId=call.resolveId(upToId) if upToId is not None and immutable else None)
    if maxChanges is not None and len(removed) + len(added) > maxChanges:
        raise MethodError("tooManyChanges")
    answer = {"accountId": account.id, "oldQueryState": since, "newQueryState": newState,
              "removed": removed, "added": added}
    if calculateTotal:
        answer["total"] = len(ids)
    return answer
