"""
FETCH lines of index data only (UID, FLAGS, INTERNALDATE, RFC822.SIZE,
MODSEQ...): one ``bytes`` format per command, filled by a closure with one
``%`` operation per message, the hot loop of ``FETCH 1:* (FLAGS)`` over a
whole mailbox.

The name tuples clients send most have hand-written closures that read
the message's fields directly (as fast as code generated for the tuple);
the others get a closure over one getter per item.
"""

from __future__ import annotations

import re
from operator import attrgetter

from mailnet.imap import serialize

# item name -> its text in the format; the items that show a value have a getter in _getters().
LINE_ITEMS = {
    "UID": b"UID %d",
    "FLAGS": b"FLAGS %s",
    "INTERNALDATE": b"INTERNALDATE %s",
    "RFC822.SIZE": b"RFC822.SIZE %d",
    "MODSEQ": b"MODSEQ (%d)",
    # Items answered NIL, as no value is kept: SAVEDATE (RFC 8514).
    "SAVEDATE": b"SAVEDATE NIL",
    # RFC 8474 s5.1: EMAILID (<objectid>), from the ids the command looked up first (NIL from a store without ids).
    "EMAILID": b"EMAILID %s",
    # RFC 8474 s5.2: THREADID (<objectid>) or NIL, from the ids the command looked up first.
    "THREADID": b"THREADID %s",
}

_RECENT = frozenset({"\\Recent"})


def lineFormat(names):
    """``* %d FETCH (...)\\r\\n`` with one conversion per item of ``names`` that shows a value."""
    return b"* %d FETCH (" + b" ".join(LINE_ITEMS[name] for name in names) + b")\r\n"


# Closures for the name tuples that clients send most (flags without \Recent):
# names -> (fmt, F = serialize.FLAGS, D = serialize.internalDate) -> (msn, info) -> line.
_COMMON = {
    ("UID", "FLAGS"): lambda fmt, F, D: lambda msn, i: fmt % (msn, i.uid, F[i.flags]),
    ("FLAGS",): lambda fmt, F, D: lambda msn, i: fmt % (msn, F[i.flags]),
    ("FLAGS", "UID"): lambda fmt, F, D: lambda msn, i: fmt % (msn, F[i.flags], i.uid),
    ("UID", "FLAGS", "MODSEQ"): lambda fmt, F, D: lambda msn, i: fmt % (msn, i.uid, F[i.flags], i.modseq),
    ("UID", "RFC822.SIZE", "FLAGS"): lambda fmt, F, D: lambda msn, i: fmt % (msn, i.uid, i.size, F[i.flags]),
    ("UID", "FLAGS", "RFC822.SIZE"): lambda fmt, F, D: lambda msn, i: fmt % (msn, i.uid, F[i.flags], i.size),
    ("UID", "RFC822.SIZE", "INTERNALDATE", "FLAGS"):
        lambda fmt, F, D: lambda msn, i: fmt % (msn, i.uid, i.size, D(i.internalDate), F[i.flags]),
    ("UID", "RFC822.SIZE", "FLAGS", "INTERNALDATE"):
        lambda fmt, F, D: lambda msn, i: fmt % (msn, i.uid, i.size, F[i.flags], D(i.internalDate)),
}


# RFC 8474 s7: objectid = 1*255(ALPHA / DIGIT / "_" / "-"), case-sensitive.
_OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z", re.ASCII).match
_ALL_OBJECTIDS = re.compile(r"(?:[A-Za-z0-9_-]{1,255}\n)*\Z", re.ASCII).match


def isObjectId(value):
    """True for a string a client may be shown as an RFC 8474 objectid (a store's id of another form is not)."""
    return isinstance(value, str) and _OBJECTID(value) is not None


def objectIdItem(objectId):
    """RFC 8474 s5: ``(<objectid>)``, or ``NIL`` for none (or a store's id that is not a valid objectid)."""
    return b"(" + objectId.encode("ascii") + b")" if objectId and isObjectId(objectId) else b"NIL"


def renderedIds(ids):
    """{uid: ``(<objectid>)``} of {uid: id} (a store's id that is not a valid objectid left out: NIL)."""
    if not ids:
        return {}
    values = "\n".join(ids.values())
    if _ALL_OBJECTIDS(values + "\n") is not None:
        # One check for the whole set, the usual case.
        return {uid: b"(" + value.encode("ascii") + b")" for uid, value in ids.items()}
    return {uid: objectIdItem(value) for uid, value in ids.items() if isObjectId(value)}


def _getters(names, recent, threadIds=None, emailIds=None):
    """One function (info) -> value per item of ``names`` that shows a value."""
    F = serialize.FLAGS
    D = serialize.internalDate
    if recent:
        flags = serialize.flags

        def flagsOf(i):
            return flags(i.flags | _RECENT) if i.uid in recent else flags(i.flags)
    else:
        def flagsOf(i):
            return F[i.flags]

    def dateOf(i):
        return D(i.internalDate)

    getters = {
        "UID": attrgetter("uid"),
        "FLAGS": flagsOf,
        "INTERNALDATE": dateOf,
        "RFC822.SIZE": attrgetter("size"),
        "MODSEQ": attrgetter("modseq"),
    }
    # RFC 8474 s5: the ids looked up for the command, rendered once.
    if "THREADID" in names:
        threadOf = renderedIds(threadIds).get
        getters["THREADID"] = lambda i: threadOf(i.uid, b"NIL")
    if "EMAILID" in names:
        emailOf = renderedIds(emailIds).get
        getters["EMAILID"] = lambda i: emailOf(i.uid, b"NIL")
    return [getters[name] for name in names if name in getters]


def lineMaker(names, recent=None, threadIds=None, emailIds=None):
    """
    A function (msn, info) -> the FETCH line for ``names``, a tuple of
    names from LINE_ITEMS only; ``recent`` is the set of UIDs shown with
    \\Recent (IMAP4rev1); ``threadIds`` {uid: thread id} for THREADID,
    ``emailIds`` {uid: email id} for EMAILID.
    """
    fmt = lineFormat(names)
    if not recent and "THREADID" not in names:
        common = _COMMON.get(names)
        if common is not None:
            return common(fmt, serialize.FLAGS, serialize.internalDate)
    getters = _getters(names, recent, threadIds, emailIds)
    # One closure per number of values, so the common cases build their tuple without a loop.
    if not getters:
        return lambda msn, i: fmt % (msn,)
    if len(getters) == 1:
        (a,) = getters
        return lambda msn, i: fmt % (msn, a(i))
    if len(getters) == 2:
        a, b = getters
        return lambda msn, i: fmt % (msn, a(i), b(i))
    if len(getters) == 3:
        a, b, c = getters
        return lambda msn, i: fmt % (msn, a(i), b(i), c(i))
    if len(getters) == 4:
        a, b, c, d = getters
        return lambda msn, i: fmt % (msn, a(i), b(i), c(i), d(i))
    return lambda msn, i: fmt % (msn, *[g(i) for g in getters])
