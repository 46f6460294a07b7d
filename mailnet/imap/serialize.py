"""
IMAP response serialization: strings (atom, quoted, literal), lists,
sequence sets, dates, flags, and the modified UTF-7 mailbox-name codec.

Pure functions, bytes out; no I/O.
"""

from __future__ import annotations

import calendar
import time

from mailnet.mail.codecs import decodeMutf7, encodeMutf7

CRLF = b"\r\n"

# RFC 3501 s9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0, 32)) | {127}
ATOM_CHARS = frozenset(range(33, 127)) - _ATOM_SPECIALS
ASTRING_CHARS = ATOM_CHARS | {ord("]")}

def isAtom(value: bytes) -> bool:
    return bool(value) and all(c in ATOM_CHARS for c in value)


def canQuote(value: bytes, utf8=False) -> bool:
    """Whether ``value`` can be a quoted string (RFC 3501 s4.3; RFC 9051 allows UTF-8)."""
    if b"\r" in value or b"\n" in value or b"\x00" in value or len(value) > 4000:
        return False
    if not value.isascii():
        if not utf8:
            return False
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: bytes, binary=False) -> bytes:
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % len(value) + value


def string(value, utf8=False) -> bytes:
    """A quoted string, or a literal when quoting cannot carry the value."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if canQuote(value, utf8):
        return quoted(value)
    return literal(value)


def nstring(value, utf8=False) -> bytes:
    if value is None:
        return b"NIL"
    return string(value, utf8)


def astring(value, utf8=False) -> bytes:
    """An atom when possible (INBOX, Sent), else a string."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if value and all(c in ASTRING_CHARS for c in value) and value.upper() != b"NIL":
        return value
    return string(value, utf8)


def plist(items) -> bytes:
    """``(a b c)`` from already-serialized items."""
    return b"(" + b" ".join(items) + b")"


# Flags

class _FlagCache(dict):
    """frozenset of flags -> ``(\\Seen $Label)``; ``FLAGS[flagset]`` computes on a miss."""

    def __missing__(self, flagset):
        value = b"(" + " ".join(sorted(flagset, key=_flagOrder)).encode("utf-8", "replace") + b")"
        if len(self) > 10000:
            self.clear()
        self[flagset] = value
        return value


FLAGS = _FlagCache()


def flags(flagset) -> bytes:
    """``(\\Seen $Label)`` for a frozenset of flag strings; cached per set."""
    return FLAGS[flagset]


_SYSTEM_ORDER = {"\\Answered": 0, "\\Flagged": 1, "\\Deleted": 2, "\\Seen": 3, "\\Draft": 4, "\\Recent": 5}


def _flagOrder(flag):
    return (_SYSTEM_ORDER.get(flag, 9), flag)


# Sequence sets


def seqset(numbers) -> bytes:
    """``1:3,5,7:9`` from an iterable of ints (any order, duplicates ok)."""
    nums = sorted(set(numbers))
    if not nums:
        return b""
    out = []
    start = prev = nums[0]
    for n in nums[1:]:
        if n == prev + 1:
            prev = n
            continue
        out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = n
    out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(out)


def seqsetRanges(ranges) -> bytes:
    """``1:3,5`` from sorted, disjoint (lo, hi) ranges."""
    return b",".join(b"%d" % lo if lo == hi else b"%d:%d" % (lo, hi) for lo, hi in ranges)


# Dates

MONTHS = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"]


def internalDate(seconds: float) -> bytes:
    """RFC 3501 date-time, in UTC: ``"17-Jul-1996 09:44:25 +0000"``."""
    t = time.gmtime(int(seconds))
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


def dateTimeToEpoch(day, month, year, hour, minute, second, zoneMinutes) -> float:
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - zoneMinutes * 60


# Modified UTF-7 (RFC 3501 s5.1.3): the one codec is mailnet.mail.codecs.


def encodeMailbox(name: str) -> bytes:
    """Modified UTF-7 of a mailbox name."""
    return encodeMutf7(name).encode("ascii")


def decodeMailbox(data: bytes) -> str:
    """
    Decode modified UTF-7.  Raises ValueError on anything not in canonical
    form (8-bit bytes, bad base64, encoded printable ASCII, bad UTF-16).
    """
    try:
        return decodeMutf7(data.decode("latin-1"))
    except ValueError as e:
        raise ValueError("mailbox name is %s" % e) from None
