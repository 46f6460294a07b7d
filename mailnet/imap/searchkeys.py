"""
The SEARCH key grammar (RFC 3501 s6.4.4, RFC 9051 s6.4.4, with RFC 7162
MODSEQ and RFC 8474 EMAILID/THREADID) and the arguments of SEARCH (RFC
4731 RETURN), SORT (RFC 5256, RFC 5267 ESORT, RFC 5957) and THREAD (RFC
5256), without I/O.  The functions take the recursive-descent parser of
:mod:`mailnet.imap.parser` (its ``peek``, ``sp``, ``atom``, ``astring``,
``seqSet``, ``date``...); :func:`mailnet.imap.parser.parseCommand`
dispatches to :func:`search`, :func:`sort` and :func:`thread`.
"""

from __future__ import annotations

# Search keys are tuples: (op, args...).  Ops:
#   ALL; FLAG flag positive(bool); KEYWORD kw positive; NEW; OLD; RECENT;
#   NOT key; OR a b; AND [keys]; SEQ SeqSet; UID SeqSet;
#   HEADER name value; BODY s; TEXT s (name/value/s are bytes);
#   LARGER n; SMALLER n; BEFORE/ON/SINCE/SENTBEFORE/SENTON/SENTSINCE date
#   (datetime.date); MODSEQ n.

_FLAG_KEYS = {
    b"ANSWERED": ("\\Answered", True), b"DELETED": ("\\Deleted", True), b"DRAFT": ("\\Draft", True),
    b"FLAGGED": ("\\Flagged", True), b"SEEN": ("\\Seen", True),
    b"UNANSWERED": ("\\Answered", False), b"UNDELETED": ("\\Deleted", False), b"UNDRAFT": ("\\Draft", False),
    b"UNFLAGGED": ("\\Flagged", False), b"UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {b"BCC": b"Bcc", b"CC": b"Cc", b"FROM": b"From", b"SUBJECT": b"Subject", b"TO": b"To"}
_DATE_KEYS = {b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE"}

_OBJECTID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def searchKeys(p):
    """One or more search keys separated by spaces (several: an AND)."""
    keys = [searchKey(p)]
    while p.peek() == 0x20:
        p.sp()
        keys.append(searchKey(p))
    return keys[0] if len(keys) == 1 else ("AND", keys)


def searchKey(p, depth=0):
    """One search key (a parenthesized list is one), as a tuple (see above)."""
    if depth > 50:
        p.fail("Search program nested too deeply")
    c = p.peek()
    if c == 0x28:  # (
        p.i += 1
        keys = [searchKey(p, depth + 1)]
        while not p.maybe(b")"):
            p.sp()
            keys.append(searchKey(p, depth + 1))
        return keys[0] if len(keys) == 1 else ("AND", keys)
    if c is not None and (0x30 <= c <= 0x39 or c in (0x2A, 0x24)):  # digit, *, $
        return ("SEQ", p.seqSet())
    word = p.word()
    if not word:
        p.fail("Expected a search key")
    if word == b"ALL":
        return ("ALL",)
    if word in _FLAG_KEYS:
        flag, positive = _FLAG_KEYS[word]
        return ("FLAG", flag, positive)
    if word in (b"NEW", b"OLD", b"RECENT"):
        return (word.decode(),)
    if word in (b"KEYWORD", b"UNKEYWORD"):
        p.sp()
        return ("FLAG", p.flag(), word == b"KEYWORD")
    if word == b"NOT":
        p.sp()
        return ("NOT", searchKey(p, depth + 1))
    if word == b"OR":
        p.sp()
        a = searchKey(p, depth + 1)
        p.sp()
        return ("OR", a, searchKey(p, depth + 1))
    if word in _HEADER_KEYS:
        p.sp()
        # RFC 3501 s6.4.4: FROM/TO/CC/BCC search the address as the envelope has it.
        return ("HEADER" if word == b"SUBJECT" else "ADDRESS", _HEADER_KEYS[word], p.astring())
    if word == b"HEADER":
        p.sp()
        name = p.astring("a header field name")
        p.sp()
        return ("HEADER", name, p.astring())
    if word in (b"BODY", b"TEXT"):
        p.sp()
        return (word.decode(), p.astring())
    if word in (b"LARGER", b"SMALLER"):
        p.sp()
        return (word.decode(), p.number())
    if word in _DATE_KEYS:
        p.sp()
        return (word.decode(), p.date())
    if word == b"UID":
        p.sp()
        return ("UID", p.seqSet())
    if word == b"MODSEQ":
        # RFC 7162 s3.1.5: MODSEQ [entry-name entry-type] mod-sequence
        p.sp()
        if p.peek() == 0x22:
            p.quoted()
            p.sp()
            p.atom("an entry type")
            p.sp()
        return ("MODSEQ", p.number("a mod-sequence"))
    if word in (b"EMAILID", b"THREADID"):
        # RFC 8474 s6: EMAILID / THREADID SP objectid; s7: 1*255(ALPHA / DIGIT / "_" / "-"), case-sensitive.
        p.sp()
        value = p.atom("an object id")
        if len(value) > 255 or value.strip(_OBJECTID_CHARS):
            p.fail("Invalid object id")
        return (word.decode(), value.decode("ascii"))
    p.fail("Unknown search key %s" % word.decode("ascii", "replace"))


def search(p, uid):
    p.sp()
    returns = None
    charset = None
    partial = None
    if p.maybeCI(b"RETURN "):
        # RFC 4731 s3: RETURN (options); RFC 5267 s4: CONTEXT, UPDATE, PARTIAL
        returns, partial = returnOptions(p, "SEARCH")
        p.sp()
    if p.maybeCI(b"CHARSET "):
        charset = p.astring("a charset").decode("ascii", "replace").upper()
        p.sp()
    keys = searchKeys(p)
    return {"returns": returns, "partial": partial, "charset": charset, "keys": keys}


RETURN_OPTIONS = frozenset(("MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL"))


def returnOptions(p, command):
    """
    The list of a RETURN (...) (RFC 4731 s3, RFC 5267 s4.1): (option names
    upper case, the PARTIAL range or None).  A range is (first, last) of
    1-based positions in the result, or of positions counted from its end
    when negative (RFC 9394 s4.4: ``-1:-100`` is the last hundred).
    """
    p.expect(b"(")
    options = []
    partial = None
    while not p.maybe(b")"):
        if options:
            p.sp()
        word = p.atom("a RETURN option").upper().decode("ascii", "replace")
        if word not in RETURN_OPTIONS:
            p.fail("Unknown %s RETURN option %s" % (command, word))
        if word in options:
            # RFC 5267 s4.4: not more than one PARTIAL (nor any option twice)
            p.fail("RETURN option %s given twice" % word)
        if word == "PARTIAL":
            p.sp()
            partial = partialRange(p)
        options.append(word)
    if "PARTIAL" in options and "ALL" in options:
        # RFC 5267 s4.4: PARTIAL and ALL are mutually exclusive
        p.fail("RETURN options PARTIAL and ALL cannot be used together")
    return options, partial


def partialRange(p):
    """RFC 5267 s4.4 partial-range (``1:100``), RFC 9394 s4.4 also ``-1:-100``: (first, last), first <= last in size."""
    raw = p.atom("a PARTIAL range")
    first, colon, last = raw.partition(b":")
    try:
        a, b = int(first), int(last)
    except ValueError:
        a = b = 0
    if not colon or a == 0 or b == 0 or (a < 0) != (b < 0) or not first.lstrip(b"-").isdigit() \
            or not last.lstrip(b"-").isdigit() or abs(a) > 0xFFFFFFFF or abs(b) > 0xFFFFFFFF:
        p.fail("Invalid PARTIAL range (expected n:m or -n:-m)")
    if abs(a) > abs(b):
        a, b = b, a
    return a, b


def cancelUpdate(p, uid):
    """RFC 5267 s4.3.5: CANCELUPDATE 1*(SP quoted): the tags."""
    tags = []
    while p.peek() == 0x20:
        p.sp()
        if p.peek() != 0x22:
            p.fail("CANCELUPDATE takes quoted tags")
        tags.append(p.quoted().decode("utf-8", "replace"))
    if not tags:
        p.fail("CANCELUPDATE needs the tag of a search or sort, quoted")
    return {"tags": tags}


_SORT_KEYS = frozenset((b"ARRIVAL", b"CC", b"DATE", b"FROM", b"SIZE", b"SUBJECT", b"TO", b"DISPLAYFROM", b"DISPLAYTO"))


def sort(p, uid):
    # RFC 5256 s5: SORT sort-criteria SP search-criteria (the charset is not
    # optional); RFC 5267 s3: an optional RETURN (...) first (ESORT);
    # RFC 5957: DISPLAYFROM, DISPLAYTO.
    p.sp()
    returns = None
    partial = None
    if p.maybeCI(b"RETURN "):
        returns, partial = returnOptions(p, "SORT")
        p.sp()

    def criterion():
        word = p.atom("a sort key").upper()
        reverse = word == b"REVERSE"
        if reverse:
            p.sp()
            word = p.atom("a sort key").upper()
        if word not in _SORT_KEYS:
            p.fail("Unknown sort key %s" % word.decode("ascii", "replace"))
        return word.decode("ascii"), reverse

    criteria = p.parenList(criterion)
    if not criteria:
        p.fail("Expected at least one sort key")
    p.sp()
    charset = p.astring("a charset").decode("ascii", "replace").upper()
    if p.peek() != 0x20:
        p.fail("Expected a charset, then the search keys")
    p.sp()
    return {"returns": returns, "partial": partial, "criteria": criteria, "charset": charset, "keys": searchKeys(p)}


def thread(p, uid):
    # RFC 5256 s4: thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria,
    # search-criteria = charset 1*(SP search-key)
    p.sp()
    algorithm = p.atom("a threading algorithm").upper().decode("ascii", "replace")
    p.sp()
    charset = p.astring("a charset").decode("ascii", "replace").upper()
    p.sp()
    return {"algorithm": algorithm, "charset": charset, "keys": searchKeys(p)}
