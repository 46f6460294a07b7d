"""
SEARCH evaluation (RFC 3501 s6.4.4, RFC 9051 s6.4.4, RFC 7162 MODSEQ).

A search program (the parser's key tuples) is evaluated per message against
a :class:`Candidate`: index metadata first (flags, size, dates, UIDs cost no
I/O), the message content only when a key needs it and only for messages
the metadata keys did not rule out.

String matches are case-insensitive substring matches on decoded text:
header values have RFC 2047 encoded words decoded; BODY and TEXT look at the
text parts of the message with base64 / quoted-printable undone and the
part's charset applied.  A plain 7-bit single-part message is matched on its
bytes directly (the same result, without building a MIME tree).
"""

from __future__ import annotations

import datetime
import email.utils
import time

from mailnet.mail.headers import decodeHeader
from mailnet.mail.mime import MAX_HEADER, MAX_PARTS
from mailnet.mail.textsearch import MessageText, addressText
from mailnet.store.interfaces import SEEN

# Messages larger than this are searched in their raw form, chunk by chunk,
# without MIME decoding (documented in docs/imap.md).
DECODE_LIMIT = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
# Header fields are searched in the first MAX_HEADER bytes of the header
# block (as FETCH keeps them); what comes later is not parsed, so a 10 MB
# header costs no more than a 256 KB one.  The text of at most MAX_PARTS
# MIME parts is decoded ([limits] mime_parts); the rest of the message is
# matched as raw text.  (Both from mailnet.mail.mime.)

# The caps are mailnet.mail.mime's (MAX_HEADER, MAX_PARTS); named here too, where tests read them.
__all__ = ["Candidate", "Searcher", "SearchError", "DECODE_LIMIT", "MAX_HEADER", "MAX_PARTS"]

_CONTENT_OPS = {"HEADER", "ADDRESS", "BODY", "TEXT", "SENTBEFORE", "SENTON", "SENTSINCE"}


class SearchError(Exception):
    """A search that cannot run (bad charset...); ``code`` is the response code."""

    def __init__(self, text, code=None):
        super().__init__(text)
        self.code = code


def needsContent(key) -> bool:
    op = key[0]
    if op in _CONTENT_OPS:
        return True
    if op == "NOT":
        return needsContent(key[1])
    if op == "OR":
        return needsContent(key[1]) or needsContent(key[2])
    if op == "AND":
        return any(needsContent(k) for k in key[1])
    return False


def split(key):
    """(metadata keys, content keys) of a top-level AND."""
    keys = key[1] if key[0] == "AND" else [key]
    meta = [k for k in keys if not needsContent(k)]
    content = [k for k in keys if needsContent(k)]
    return meta, content


def usesModseq(key) -> bool:
    op = key[0]
    if op == "MODSEQ":
        return True
    if op == "NOT":
        return usesModseq(key[1])
    if op == "OR":
        return usesModseq(key[1]) or usesModseq(key[2])
    if op == "AND":
        return any(usesModseq(k) for k in key[1])
    return False


def objectIdKinds(key) -> set:
    """The RFC 8474 s6 keys ("EMAILID", "THREADID") a program uses."""
    op = key[0]
    if op in ("EMAILID", "THREADID"):
        return {op}
    if op == "NOT":
        return objectIdKinds(key[1])
    if op == "OR":
        return objectIdKinds(key[1]) | objectIdKinds(key[2])
    if op == "AND":
        return set().union(*(objectIdKinds(k) for k in key[1]))
    return set()


def resolveObjectIds(key, ids):
    """
    The program with each EMAILID / THREADID key made ``("UIDIN", uids)``:
    the UIDs of the mailbox with that id; ``ids`` maps "EMAILID" and
    "THREADID" to ``{uid: id}`` of the mailbox (empty from a store without ids).
    """
    op = key[0]
    if op in ("EMAILID", "THREADID"):
        wanted = key[1]
        return ("UIDIN", frozenset(uid for uid, value in ids.get(op, {}).items() if value == wanted))
    if op == "NOT":
        return (op, resolveObjectIds(key[1], ids))
    if op == "OR":
        return (op, resolveObjectIds(key[1], ids), resolveObjectIds(key[2], ids))
    if op == "AND":
        return (op, [resolveObjectIds(k, ids) for k in key[1]])
    return key


def decodeStrings(key, charset):
    """Decode the byte strings in a program to str (casefolded) with the SEARCH charset."""
    op = key[0]
    if op in ("HEADER", "ADDRESS"):
        return (op, key[1].decode("ascii", "replace"), _decode(key[2], charset))
    if op in ("BODY", "TEXT"):
        return (op, _decode(key[1], charset))
    if op == "NOT":
        return (op, decodeStrings(key[1], charset))
    if op == "OR":
        return (op, decodeStrings(key[1], charset), decodeStrings(key[2], charset))
    if op == "AND":
        return (op, [decodeStrings(k, charset) for k in key[1]])
    return key


def _decode(value: bytes, charset):
    try:
        return value.decode(charset or "utf-8").casefold()
    except (UnicodeDecodeError, LookupError):
        raise SearchError("Search string is not valid %s" % (charset or "UTF-8"), b"BADCHARSET (UTF-8 US-ASCII)")


def _utcDate(seconds):
    t = time.gmtime(seconds)
    return datetime.date(t.tm_year, t.tm_mon, t.tm_mday)


class Candidate(MessageText):
    """One message being searched: metadata, and content loaded on demand (:class:`MessageText`)."""

    __slots__ = ("msn", "uid", "info", "recent", "huge")

    def __init__(self, msn, uid, info, recent):
        super().__init__(None)  # data: bytes of the message (only the header for huge ones)
        self.msn = msn
        self.uid = uid
        self.info = info
        self.recent = recent
        self.huge = None  # for huge messages: the set of needles found in the raw bytes


class Searcher:
    """
    Evaluate one program.

    @param program: key tuple with strings decoded (:func:`decodeStrings`).
    @param savedUids: the RFC 5182 saved result (set of UIDs) for ``$``.
    @param largestMsn / largestUid: what ``*`` means.
    """

    def __init__(self, program, largestMsn, largestUid, savedUids=None, maxParts=MAX_PARTS):
        self.program = program
        self.largestMsn = largestMsn
        self.largestUid = largestUid
        self.savedUids = savedUids or set()
        self.maxParts = maxParts
        self._sets = {}

    def _inSet(self, seqset, n, largest, uid):
        if seqset.saved:
            return uid in self.savedUids
        ranges = self._sets.get((id(seqset), largest))
        if ranges is None:
            ranges = self._sets[(id(seqset), largest)] = seqset.resolve(largest)
        for lo, hi in ranges:
            if lo <= n <= hi:
                return True
        return False

    def match(self, c: Candidate, key=None) -> bool:
        key = self.program if key is None else key
        op = key[0]
        info = c.info
        if op == "AND":
            for k in key[1]:
                if not self.match(c, k):
                    return False
            return True
        if op == "ALL":
            return True
        if op == "FLAG":
            return (key[1] in info.flags) == key[2]
        if op == "NOT":
            return not self.match(c, key[1])
        if op == "OR":
            return self.match(c, key[1]) or self.match(c, key[2])
        if op == "SEQ":
            if key[1].saved:
                return c.uid in self.savedUids
            return self._inSet(key[1], c.msn, self.largestMsn, c.uid)
        if op == "UID":
            if key[1].saved:
                return c.uid in self.savedUids
            return self._inSet(key[1], c.uid, self.largestUid, c.uid)
        if op == "RECENT":
            return c.recent
        if op == "NEW":
            return c.recent and SEEN not in info.flags
        if op == "OLD":
            return not c.recent
        if op == "LARGER":
            return info.size > key[1]
        if op == "SMALLER":
            return info.size < key[1]
        if op == "MODSEQ":
            return info.modseq >= key[1]
        if op == "UIDIN":
            # EMAILID / THREADID (RFC 8474 s6), looked up in the store before the search: the UIDs they name.
            return c.uid in key[1]
        if op in ("BEFORE", "ON", "SINCE"):
            return _compareDate(op, _utcDate(info.internalDate), key[1])
        if op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            return _compareDate(op[4:], self._sentDate(c), key[1])
        if op == "HEADER":
            return self._header(c, key[1], key[2])
        if op == "ADDRESS":
            return self._address(c, key[1], key[2])
        if op == "BODY":
            return self._text(c, key[1], body=True)
        if op == "TEXT":
            return self._text(c, key[1], body=False)
        raise SearchError("Unknown search key %s" % op)

    def _sentDate(self, c):
        if c.data is None:
            return _utcDate(c.info.internalDate)
        value = c.header().get("Date")
        if value:
            parsed = email.utils.parsedate_tz(str(value))
            if parsed:
                try:
                    # RFC 3501: the date as written, disregarding time and zone.
                    return datetime.date(parsed[0], parsed[1], parsed[2])
                except ValueError:
                    pass
        return _utcDate(c.info.internalDate)

    def _header(self, c, name, needle):
        if c.data is None:
            return False
        if name is None:
            values = [v for _, v in c.header().items()]
        else:
            values = c.header().get_all(name)
        if not values:
            return False
        if not needle:
            return True  # RFC 3501: empty string matches every message with the field
        for value in values:
            if needle in decodeHeader(value):
                return True
        return False

    def _address(self, c, name, needle):
        """
        RFC 3501 s6.4.4 FROM/TO/CC/BCC: the string in the addresses as the
        envelope has them (comments and quoting gone, encoded words
        decoded), each written ``Name <mailbox@host>`` as Dovecot matches.
        """
        if c.data is None:
            return False
        values = c.header().get_all(name)
        if not values:
            return False
        if not needle:
            return True
        for value in values:
            if needle in addressText(value):
                return True
        return False

    def _text(self, c, needle, body):
        if c.data is None:
            return False
        if not needle:
            return True
        if c.huge is not None:
            if not body and self._header(c, None, needle):
                return True
            return needle in c.huge
        if c.fast() and needle.isascii():
            raw = c._allText
            if body:
                return raw.find(needle.encode("ascii"), c.bodyOffset()) >= 0
            return needle.encode("ascii") in raw
        if not body:
            head = c.data[:c.bodyOffset()]
            if b"=?" not in head and needle.isascii() and head.isascii():
                if needle.encode("ascii") in head.lower():
                    return True
            else:
                for _, value in c.header().items():
                    if needle in decodeHeader(value):
                        return True
        return needle in c.bodyText(self.maxParts)


def _compareDate(op, date, target):
    if op == "BEFORE":
        return date < target
    if op == "ON":
        return date == target
    return date >= target  # SINCE


def hugeMatch(f, program):
    """
    For messages over DECODE_LIMIT: scan the raw bytes in chunks for the
    BODY/TEXT strings of ``program`` (ASCII, case-insensitive).  Returns a
    set of needles found.
    """
    needles = set()
    _needles(program, needles)
    wanted = {n.encode("utf-8") for n in needles if n}
    found = set()
    keep = max((len(n) for n in wanted), default=0)
    tail = b""
    while wanted - found:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        data = (tail + chunk).lower()
        for n in wanted - found:
            if n in data:
                found.add(n)
        tail = data[-keep:] if keep else b""
    return {n.decode("utf-8") for n in found}


def _needles(key, out):
    op = key[0]
    if op in ("BODY", "TEXT"):
        out.add(key[1])
    elif op in ("HEADER", "ADDRESS"):
        out.add(key[2])
    elif op == "NOT":
        _needles(key[1], out)
    elif op == "OR":
        _needles(key[1], out)
        _needles(key[2], out)
    elif op == "AND":
        for k in key[1]:
            _needles(k, out)
