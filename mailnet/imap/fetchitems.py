"""
The FETCH command's arguments (RFC 3501 s6.4.5, RFC 9051 s6.4.5, RFC 3516
BINARY, RFC 7162 CHANGEDSINCE / VANISHED): the data items, the macros, the
body sections, without I/O.  The functions take the recursive-descent
parser of :mod:`mailnet.imap.parser` (its ``peek``, ``sp``, ``atom``,
``number``, ``parenList``...); :func:`mailnet.imap.parser.parseCommand`
dispatches to :func:`fetch`.
"""

from __future__ import annotations

from mailnet.imap.serialize import ATOM_CHARS


class Section:
    """
    A body section (RFC 3501 s6.4.5): ``part`` is a tuple of part numbers,
    ``text`` one of None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
    "TEXT", "MIME"; ``fields`` the header names (bytes, as the client gave
    them).
    """

    __slots__ = ("part", "text", "fields")

    def __init__(self, part=(), text=None, fields=()):
        self.part = part
        self.text = text
        self.fields = fields

    def spec(self) -> bytes:
        """The section as it appears in the response: ``1.HEADER.FIELDS (A B)``."""
        from mailnet.imap.serialize import astring

        out = b".".join(b"%d" % p for p in self.part)
        if self.text:
            out += (b"." if out else b"") + self.text.encode()
            if self.fields:
                out += b" (" + b" ".join(astring(f) for f in self.fields) + b")"
        return out

    def __eq__(self, other):
        return isinstance(other, Section) and (self.part, self.text, self.fields) == (other.part, other.text, other.fields)

    def __hash__(self):
        return hash((self.part, self.text, self.fields))

    def __repr__(self):
        return f"Section({self.spec()!r})"


class FetchAtt:
    """
    One FETCH data item.  ``name`` is one of UID FLAGS INTERNALDATE
    RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT
    MODSEQ BINARY.SIZE, or BODY[] / BINARY[] for sections (with
    ``section``, ``peek`` and ``partial`` (start, count) or None).
    """

    __slots__ = ("name", "section", "peek", "partial")

    def __init__(self, name, section=None, peek=False, partial=None):
        self.name = name
        self.section = section
        self.peek = peek
        self.partial = partial

    def __eq__(self, other):
        return isinstance(other, FetchAtt) and (self.name, self.section, self.peek, self.partial) == (
            other.name, other.section, other.peek, other.partial)

    def __hash__(self):
        return hash((self.name, self.section, self.peek, self.partial))

    def __repr__(self):
        extra = ""
        if self.section is not None:
            extra = "[%s]" % self.section.spec().decode("ascii", "replace")
        if self.partial:
            extra += "<%d.%d>" % self.partial
        return f"FetchAtt({self.name}{' PEEK' if self.peek else ''}{extra})"


_FETCH_SIMPLE = {
    b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODYSTRUCTURE",
    b"RFC822", b"RFC822.HEADER", b"RFC822.TEXT", b"MODSEQ", b"SAVEDATE", b"EMAILID", b"THREADID",
}
_FETCH_MACROS = {
    b"ALL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"),
    b"FAST": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"),
    b"FULL": (b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY"),
}

_DIGITS = frozenset(b"0123456789")
FETCH_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")
_SECTION_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.")


def fetch(p, uid):
    """FETCH sequence-set items [(CHANGEDSINCE n [VANISHED])]."""
    p.sp()
    seqset = p.seqSet()
    p.sp()
    atts, macro = fetchAtts(p)
    changedSince = None
    vanished = False
    if p.peek() == 0x20:
        # RFC 7162 s3.1.4 / s3.2.6: (CHANGEDSINCE n [VANISHED])
        p.sp()
        p.expect(b"(", "'(' before FETCH modifiers")
        while True:
            word = p.atom("a FETCH modifier").upper()
            if word == b"CHANGEDSINCE":
                p.sp()
                changedSince = p.number("a mod-sequence")
            elif word == b"VANISHED":
                vanished = True
            else:
                p.fail("Unknown FETCH modifier %s" % word.decode("ascii", "replace"))
            if p.maybe(b")"):
                break
            p.sp()
        if vanished and (not uid or changedSince is None):
            p.fail("VANISHED needs UID FETCH with CHANGEDSINCE")
    return {"seqset": seqset, "atts": atts, "macro": macro, "changedSince": changedSince, "vanished": vanished}


def fetchAtts(p):
    """(the items, whether a macro named them): a parenthesized list, one item, or ALL / FAST / FULL."""
    if p.peek() == 0x28:
        return p.parenList(lambda: fetchAtt(p)), False
    save = p.i
    word = p._run(ATOM_CHARS).upper()
    if word in _FETCH_MACROS:
        return [FetchAtt(n.decode()) for n in _FETCH_MACROS[word]], True
    p.i = save
    return [fetchAtt(p)], False


def fetchAtt(p):
    """One FETCH data item (a :class:`FetchAtt`)."""
    word = p._run(FETCH_NAME_CHARS).upper()
    if word in (b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"):
        if p.peek() != 0x5B:  # '['
            if word == b"BODY":
                return FetchAtt("BODY")
            p.fail("Expected '[' after %s" % word.decode())
        p.i += 1
        binary = word.startswith(b"BINARY")
        found = section(p, binary)
        p.expect(b"]")
        partial = None
        if word != b"BINARY.SIZE" and p.maybe(b"<"):
            start = p.number("a partial start")
            p.expect(b".", "'.' in <start.count>")
            count = p.number("a partial count", nz=True)
            p.expect(b">")
            partial = (start, count)
        if word == b"BINARY.SIZE":
            return FetchAtt("BINARY.SIZE", found)
        return FetchAtt("BINARY[]" if binary else "BODY[]", found, peek=word.endswith(b".PEEK"), partial=partial)
    if word in _FETCH_SIMPLE:
        return FetchAtt(word.decode())
    if not word:
        p.fail("Expected a FETCH item")
    p.fail("Unknown FETCH item %s" % word.decode("ascii", "replace"))


def section(p, binary=False):
    """The section inside ``[...]`` (a :class:`Section`); BINARY takes part numbers only."""
    part = []
    while True:
        n = p._run(_DIGITS)
        if not n:
            break
        if len(n) > 9 or int(n) == 0:
            p.fail("Bad section part number")
        part.append(int(n))
        if not p.maybe(b"."):
            return Section(tuple(part))
    if binary:
        if p.peek() != 0x5D:
            p.fail("BINARY sections are part numbers only")
        return Section(tuple(part))
    word = p._run(_SECTION_CHARS).upper()
    if not word:
        if part:
            p.fail("Expected a section part number or text")
        return Section()
    if word in (b"HEADER", b"TEXT"):
        return Section(tuple(part), word.decode())
    if word == b"MIME":
        if not part:
            p.fail("MIME needs a part number")
        return Section(tuple(part), "MIME")
    if word in (b"HEADER.FIELDS", b"HEADER.FIELDS.NOT"):
        p.sp()
        fields = p.parenList(lambda: p.astring("a header field name"))
        if not fields:
            p.fail("Expected at least one header field name")
        for f in fields:
            if not f or any(c <= 32 or c >= 127 or c == 58 for c in f):
                p.fail("Bad header field name")
        return Section(tuple(part), word.decode(), tuple(fields))
    p.fail("Unknown section %s" % word.decode("ascii", "replace"))
