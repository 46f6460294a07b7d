"""
Conversation threading, without I/O: the base subject and the two IMAP
THREAD algorithms of RFC 5256 (ORDEREDSUBJECT, REFERENCES), and the
header fields they read (Message-ID, In-Reply-To, References), shared by
IMAP THREAD and the store's thread ids (:mod:`mailnet.store.threads`).

IMAP SORT uses the same base subject (:func:`subjectBase`).
"""

from __future__ import annotations

import calendar
import dataclasses
import email.utils
import re

from mailnet.mail.headers import decodeWords
from mailnet.mail.headers import headerFields as scanFields

_SPACES = re.compile(r"[ \t\r\n]+")
_WSP = " \t"


# subj-blob = "[" *BLOBCHAR "]" *WSP; BLOBCHAR is any character but "[" and "]".
_BLOB = re.compile(r"\[[^\[\]]*\][ \t]*")
# A subject that none of steps 2-6 can change: no leading WSP, "[", "re" or
# "fw", no trailing WSP or "(fwd)", no folding, tab or double space, no
# encoded word.
_NEEDS_WORK = re.compile(r"^(?:[ \t\[]|re|fw)|[\t\r\n]|  |(?:\(fwd\)|\s)$|=\?", re.I)


def _blobEnd(s, i, end):
    """End of the subj-blob at ``i``, or -1."""
    m = _BLOB.match(s, i, end)
    return m.end() if m else -1


def _refwdEnd(s, i, end):
    """End of the subj-refwd at ``i`` (``("re" / ("fw" ["d"])) *WSP [subj-blob] ":"``), or -1."""
    head = s[i:i + 3].lower()
    if head.startswith("re"):
        j = i + 2
    elif head == "fwd":
        j = i + 3
    elif head.startswith("fw"):
        j = i + 2
    else:
        return -1
    while j < end and s[j] in _WSP:
        j += 1
    k = _blobEnd(s, j, end)
    if k >= 0:
        j = k
    if j < end and s[j] == ":":
        return j + 1
    return -1


def subjectBase(subject: str) -> tuple[str, bool]:
    """
    RFC 5256 s2.1: the base subject of a Subject field value, not yet
    case-mapped, and whether the subject marks a reply or forward (a
    "Re:"/"Fw:"/"Fwd:" leader, a "(fwd)" trailer or a "[fwd: ...]" wrapper
    was removed).  Steps 2-6 work on indices into the one string, so that
    long runs of "Re:", "(fwd)" or "[fwd: ...]" cost linear time.
    """
    if not _NEEDS_WORK.search(subject):
        return subject, False
    reply = False
    # (1) encoded words decoded; folding, tabs and runs of spaces to one space.
    if "=?" in subject:
        subject = decodeWords(subject)
    s = _SPACES.sub(" ", subject)
    start, end = 0, len(s)
    while True:
        # (2) trailing subj-trailer ("(fwd)" / WSP), repeatedly.
        while end > start:
            if s[end - 1] in _WSP:
                end -= 1
            elif end - start >= 5 and s[end - 5:end].lower() == "(fwd)":
                end -= 5
                reply = True
            else:
                break
        # (3) every leading subj-leader: (*subj-blob subj-refwd) / WSP.
        i = start
        while i < end:
            if s[i] in _WSP:
                i += 1
                continue
            j = i
            while True:
                k = _blobEnd(s, j, end)
                if k < 0:
                    break
                j = k
            e = _refwdEnd(s, j, end)
            if e < 0:
                break
            reply = True
            i = e
        start = i
        # (4) a leading subj-blob, if what is left is not empty; (5) repeat
        # (3) and (4).  Step (3) just failed after the run of blobs that
        # starts here, and will fail there again, so (4)+(3) together
        # remove the whole run, except the last blob when nothing follows
        # it (that one is the subj-base).
        j = start
        last = -1
        while True:
            k = _blobEnd(s, j, end)
            if k < 0:
                break
            last = j
            j = k
        if last >= 0:
            start = j if j < end else last
        # (6) "[fwd:" subject "]": unwrap and go again from (2).
        if end - start >= 6 and s[start:start + 5].lower() == "[fwd:" and s[end - 1] == "]":
            start += 5
            end -= 1
            reply = True
            continue
        return s[start:end], reply



def baseSubject(subject) -> tuple[str, bool]:
    """
    :func:`subjectBase` of a Subject field (str or bytes; None or "" gives
    ("", False)), casefolded: the form thread grouping compares (the
    i;unicode-casemap comparison of RFC 5256 s3, as casefolding
    approximates it).
    """
    if not subject:
        return "", False
    if isinstance(subject, bytes):
        subject = subject.decode("utf-8", "replace")
    base, reply = subjectBase(subject)
    return base.casefold(), reply


_MSG_ID = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")


def _normalId(inner: str) -> str | None:
    # RFC 5256 s2.2: compare msg-ids without quoting differences:
    # <"01KF8JCEOCBS0045PS"@xxx.yyy.com> is <01KF8JCEOCBS0045PS@xxx.yyy.com>.
    inner = _SPACES.sub("", inner)
    if '"' in inner or "\\" in inner:
        inner = re.sub(r'\\(.)', r"\1", inner.replace('"', ""))
    if not inner or "@" not in inner:
        return None
    return inner


def messageIds(value) -> list[str]:
    """The valid msg-ids in a header value (str or bytes), normalised, in order."""
    if not value:
        return []
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if "(" in value:
        value = _COMMENT.sub(" ", value)
    out = []
    for m in _MSG_ID.finditer(value):
        i = _normalId(m.group(1))
        if i is not None:
            out.append(i)
    return out


def references(refs, inReplyTo) -> list[str]:
    """
    RFC 5256 s2.2 step 1: the message's references: the msg-ids of
    References, else the first valid one of In-Reply-To, else none.
    Duplicates are dropped (the first place counts).
    """
    ids = messageIds(refs)
    if not ids:
        ids = messageIds(inReplyTo)[:1]
    seen = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                        "dec"), 1)}
_DATE = re.compile(r"(?:[A-Za-z]{3}, *)?(\d{1,2}) +([A-Za-z]{3}) +(\d{4}) +(\d\d):(\d\d)(?::(\d\d))? +([+-])(\d\d)(\d\d)\s*(?:\(.*\))?$")


def dateSeconds(value):
    """
    The Date field as seconds since the epoch, in UTC (RFC 5256 s2.2), or
    None when it cannot be parsed; a date without a zone is taken as UTC.
    """
    if not value:
        return None
    m = _DATE.match(value)
    if m is not None:
        # The usual form, without the email package (a third of the time).
        day, month, year, hour, minute, second, sign, zh, zm = m.groups()
        try:
            t = calendar.timegm((int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute),
                                 int(second or 0), 0, 0, 0))
        except (ValueError, OverflowError):
            return None
        offset = int(zh) * 3600 + int(zm) * 60
        return t - offset if sign == "+" else t + offset
    try:
        t = email.utils.parsedate_tz(value)
        if t is None:
            return None
        return calendar.timegm(t[:6] + (0, 0, 0)) - (t[9] or 0)
    except (ValueError, OverflowError, TypeError, IndexError):
        return None


def sentDate(value, fallback: float) -> float:
    """RFC 5256 s2.2 "sent date": the Date field in UTC, or ``fallback`` (INTERNALDATE) if it does not parse."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    seconds = dateSeconds(value)
    return fallback if seconds is None else float(seconds)


_FIELDS = {b"message-id": "messageId", b"in-reply-to": "inReplyTo", b"references": "references",
           b"subject": "subject", b"date": "date"}
_FIELD_NAMES = tuple(_FIELDS)
_FOLD = re.compile(rb"[ \t]*\r?\n[ \t]*")


def headerFields(header: bytes) -> dict:
    """
    The raw values (bytes) of Message-ID, In-Reply-To, References, Subject
    and Date in a message header (the first of each), unfolded.  Whatever
    follows the header's empty line is ignored
    (:func:`mailnet.mail.headers.headerFields` finds them).
    """
    return {_FIELDS[name]: _FOLD.sub(b" ", value.strip(b" \t\r"))
            for name, value in scanFields(header, _FIELD_NAMES).items()}


@dataclasses.dataclass(slots=True)
class Item:
    """
    One message for :func:`orderedSubject` and :func:`references`:
    ``number`` is what the answer shows (a sequence number or UID; also the
    order of ties), ``date`` the sent date.
    """

    number: int
    date: float
    subject: str
    reply: bool
    messageId: str | None
    refs: list

    @classmethod
    def fromHeader(cls, number, header: bytes, internalDate: float):
        f = headerFields(header)
        subject, reply = baseSubject(f.get("subject"))
        ids = messageIds(f.get("messageId"))
        return cls(number, sentDate(f.get("date"), internalDate), subject, reply, ids[0] if ids else None,
                   references(f.get("references"), f.get("inReplyTo")))


class _Node:
    __slots__ = ("item", "parent", "children")

    def __init__(self, item=None):
        self.item = item
        self.parent = None
        self.children = []

    def firstItem(self):
        node = self
        while node.item is None and node.children:
            node = node.children[0]
        return node.item

    def isAncestorOf(self, other):
        node = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def unlink(self):
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def adopt(self, child):
        child.unlink()
        child.parent = self
        self.children.append(child)


def _sortKey(node):
    item = node.firstItem()
    return (item.date, item.number) if item is not None else (float("inf"), 0)


def orderedSubject(items) -> list:
    """
    RFC 5256 s2.1 ORDEREDSUBJECT: threads of messages with the same base
    subject, in order of the sent date of their first message; in each,
    the first message (by sent date, ties by number) is the parent of all
    the others.  Returns the tree as nested lists: see :func:`render`.
    """
    groups = {}
    for item in sorted(items, key=lambda i: (i.subject, i.date, i.number)):
        groups.setdefault(item.subject, []).append(item)
    threads = sorted(groups.values(), key=lambda g: (g[0].date, g[0].number))
    out = []
    for g in threads:
        root = _Node(g[0])
        for item in g[1:]:
            root.adopt(_Node(item))
        out.append(root)
    return out


def referencesThreads(items) -> list:
    """
    RFC 5256 s2.2 REFERENCES, step by step.  ``items`` in ascending number
    order.  Returns the root's children (:class:`_Node` trees, dummies
    have ``item`` None), sorted; see :func:`render`.
    """
    items = sorted(items, key=lambda i: i.number)
    table = {}
    nodes = []
    unique = 0
    for item in items:
        # (1) a message without a valid Message-ID, or with one an earlier
        # message had, gets a unique one.
        mid = item.messageId
        if mid is None or (mid in table and table[mid].item is not None):
            unique += 1
            mid = ("unique", unique)
        node = table.get(mid)
        if node is None:
            node = table[mid] = _Node()
        node.item = item
        nodes.append(node)
        # (1A) link the references in order, parent to child, unless
        # already linked or a link would make a loop.
        prev = None
        for ref in item.refs:
            refNode = table.get(ref)
            if refNode is None:
                refNode = table[ref] = _Node()
            if prev is not None and refNode.parent is None and refNode is not prev \
                    and not refNode.isAncestorOf(prev):
                prev.adopt(refNode)
            prev = refNode
        # (1B) the last reference is the parent (replacing one from a
        # truncated References), unless that makes a loop.
        if prev is not None and prev is not node and not node.isAncestorOf(prev):
            prev.adopt(node)
        elif prev is None:
            node.unlink()
    # (2) the root set: containers without a parent.
    roots = [n for n in table.values() if n.parent is None]
    # (3) prune dummies.
    root = _Node()
    for n in roots:
        n.parent = root
    root.children = roots
    _prune(root)
    # (4) sort the root's children by sent date (a dummy by its first child's).
    for n in root.children:
        if n.item is None:
            n.children.sort(key=_sortKey)
    root.children.sort(key=_sortKey)
    # (5) merge threads with the same base subject.
    subjects = {}
    for n in root.children:
        subj = _threadSubject(n)
        if not subj:
            continue
        old = subjects.get(subj)
        if old is None:
            subjects[subj] = n
        elif old.item is not None and (n.item is None or (old.item.reply and not n.item.reply)):
            subjects[subj] = n
    for n in list(root.children):
        subj = _threadSubject(n)
        if not subj:
            continue
        old = subjects[subj]
        if old is n:
            continue
        if old.item is None and n.item is None:
            for c in list(n.children):
                old.adopt(c)
            n.unlink()
        elif old.item is None and n.item is not None:
            old.adopt(n)
        elif n.item is not None and n.item.reply and not old.item.reply:
            old.adopt(n)
        else:
            dummy = _Node()
            index = root.children.index(old)
            old.unlink()
            n.unlink()
            dummy.parent = root
            root.children.insert(index, dummy)
            dummy.adopt(old)
            dummy.adopt(n)
            subjects[subj] = dummy
    # (6) sort every set of siblings by sent date, youngest sets first.
    _sortAll(root)
    return root.children


def _threadSubject(node):
    item = node.item if node.item is not None else (node.children[0].item if node.children else None)
    return item.subject if item is not None else ""


def _postOrder(root):
    """Every node under ``root`` (and root), children before their parent: no recursion (threads can be deep)."""
    out = []
    stack = [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    out.reverse()
    return out


def _prune(root):
    for node in _postOrder(root):
        out = []
        for child in node.children:
            if child.item is not None:
                out.append(child)
            elif not child.children:
                continue
            elif node.parent is not None or len(child.children) == 1:
                # promote the dummy's children (to the root only if there is one)
                for c in child.children:
                    c.parent = node
                    out.append(c)
            else:
                out.append(child)
        node.children = out


def _sortAll(root):
    for node in _postOrder(root):
        node.children.sort(key=_sortKey)


def render(threads) -> bytes:
    """
    RFC 5256 s4 thread-list: ``(1 2 (3)(4 5))`` -- a parent followed by
    its only child, or by each child's subthread in parentheses; a dummy
    shows only its children's subthreads.
    """
    out = []
    for t in threads:
        out.append(b"(" + _members(t) + b")")
    return b"".join(out)


def _members(node) -> bytes:
    out = []
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, bytes):
            out.append(node)
            continue
        parts = []
        while True:
            if node.item is not None:
                parts.append(b"%d" % node.item.number)
            if len(node.children) == 1 and node.item is not None:
                node = node.children[0]
                continue
            break
        out.append(b" ".join(parts))
        if node.children:
            if parts:
                out.append(b" ")
            for c in reversed(node.children):
                stack.append(b")")
                stack.append(c)
                stack.append(b"(")
    return b"".join(out)


def thread(algorithm: str, items) -> bytes:
    """The THREAD response data (without ``* THREAD ``) for ``algorithm`` (upper case)."""
    if algorithm == "ORDEREDSUBJECT":
        return render(orderedSubject(items))
    if algorithm == "REFERENCES":
        return render(referencesThreads(items))
    raise ValueError(algorithm)


ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")
