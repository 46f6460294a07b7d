"""
Sans-I/O IMAP command reader and parser.

Two layers, no I/O in either:

* :class:`CommandReader` frames the byte stream into commands: lines and
  literals (``{N}``, ``{N+}`` (RFC 7888 LITERAL+), ``~{N}`` (RFC 3516
  literal8)).  Bytes are fed in with :meth:`CommandReader.feed` and events
  pulled out one at a time with :meth:`CommandReader.next`, so the session
  decides when to read the next command (in-order execution, and STARTTLS can
  drop whatever is still buffered).  A synchronizing literal surfaces as a
  :class:`NeedContinuation` event; the session answers ``+``.
* :func:`parseCommand` turns one framed command into a :class:`Command`, or
  raises :class:`ParseError` (answered with BAD).  The SEARCH key grammar
  and the arguments of SEARCH, SORT and THREAD are in
  :mod:`mailnet.imap.searchkeys`; the FETCH items and sections in
  :mod:`mailnet.imap.fetchitems`.

Large literals (APPEND) are spooled to an anonymous temporary file, not kept
in memory.
"""

from __future__ import annotations

import re
import tempfile

from mailnet.imap import fetchitems, notifyspec, searchkeys
from mailnet.imap.fetchitems import FETCH_NAME_CHARS as _FETCH_NAME_CHARS
from mailnet.imap.serialize import ASTRING_CHARS, ATOM_CHARS, MONTHS, dateTimeToEpoch

# The FETCH item classes, formerly defined here (imported from here by others).
FetchAtt = fetchitems.FetchAtt
Section = fetchitems.Section

# Literals larger than this go to a temporary file.
SPOOL_THRESHOLD = 256 * 1024


class ParseError(Exception):
    """
    A command that cannot be parsed.  ``str(error)`` is the human text of
    the BAD response; ``code`` an optional response code (``b"TOOBIG"``).
    """

    def __init__(self, text, code=None, tag=None, name=None):
        super().__init__(text)
        self.code = code
        self.tag = tag
        self.name = name


class Literal:
    """
    The contents of one literal: bytes in memory, or a temporary file for
    large ones.  ``len(literal)`` is its size.
    """

    __slots__ = ("size", "binary", "_buf", "_file")

    def __init__(self, size, binary=False):
        self.size = size
        self.binary = binary
        self._buf = bytearray() if size <= SPOOL_THRESHOLD else None
        self._file = None if size <= SPOOL_THRESHOLD else tempfile.TemporaryFile(prefix="mailnet-imap-")

    def _write(self, data):
        if self._buf is not None:
            self._buf += data
        else:
            self._file.write(data)

    def __len__(self):
        return self.size

    def bytes(self) -> bytes:
        """The contents (read into memory: only for small literals)."""
        if self._buf is not None:
            return bytes(self._buf)
        self._file.seek(0)
        return self._file.read()

    def open(self):
        """A readable binary file positioned at 0 (for APPEND)."""
        import io

        if self._buf is not None:
            return io.BytesIO(self._buf)
        self._file.seek(0)
        return self._file

    def close(self):
        if self._file is not None:
            self._file.close()
        self._buf = None

    def __repr__(self):
        return f"<Literal {self.size} bytes>"


# Events from CommandReader.next()


class Frame:
    """A complete command: ``parts`` alternate line segments (bytes) and
    :class:`Literal` objects, starting and ending with a segment."""

    __slots__ = ("parts", "tag")

    def __init__(self, parts, tag):
        self.parts = parts
        self.tag = tag


class NeedContinuation:
    """A synchronizing literal was announced and accepted: send ``+``."""

    __slots__ = ("size",)

    def __init__(self, size):
        self.size = size


class FrameError:
    """
    A command was rejected while being read (too long, literal too big).
    The session answers ``<tag> BAD`` (or an untagged BAD without a tag);
    with ``fatal`` it says BYE and closes.
    """

    __slots__ = ("tag", "text", "code", "fatal")

    def __init__(self, tag, text, code=None, fatal=False):
        self.tag = tag
        self.text = text
        self.code = code
        self.fatal = fatal


class RawLine:
    """A line read in raw mode (IDLE's DONE, AUTHENTICATE responses)."""

    __slots__ = ("line",)

    def __init__(self, line):
        self.line = line


_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}$")


def _tagOf(segment) -> str | None:
    i = 0
    while i < len(segment) and segment[i] in _TAG_CHARS:
        i += 1
    if i and (i == len(segment) or segment[i] == 0x20):
        return segment[:i].decode("ascii")
    return None


class CommandReader:
    """
    Frame the client's byte stream into commands.

    @param maxLine: most bytes of command text (all line segments of one
        command, literals excluded): ``[limits] imap_line_length``.
    @param maxLiteral: largest single literal: ``[limits] imap_literal_size``.
    @param maxCommandLiterals: most literal bytes in one command.
    """

    def __init__(self, maxLine=65536, maxLiteral=35 * 1024 * 1024, maxCommandLiterals=None, maxLiterals=1000):
        self.maxLine = maxLine
        self.maxLiteral = maxLiteral
        self._maxCommandLiterals = maxCommandLiterals
        self.maxLiterals = maxLiterals
        self.raw = False
        self._buf = bytearray()
        self._reset()

    @property
    def maxCommandLiterals(self):
        return self._maxCommandLiterals or (self.maxLiteral + 1024 * 1024)

    def _reset(self):
        self._parts = []
        self._textSize = 0
        self._literalBytes = 0
        self._literal = None  # Literal being read
        self._remaining = 0  # bytes of the current literal still expected
        self._skip = 0  # bytes of a refused non-synchronizing literal to drop
        self._error = None  # FrameError to report once the command ends
        self._longLine = False  # dropping the rest of an over-long line
        self._tail = b""  # last bytes of a dropped line (to see a literal marker)
        self._tag = None

    # Input

    def feed(self, data):
        self._buf += data

    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buf)

    def takeBuffered(self) -> bytes:
        """Take the bytes received and not yet read (RFC 4978: after COMPRESS they are compressed)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def clear(self):
        """Forget everything buffered and any command in progress (STARTTLS)."""
        self._buf.clear()
        self._closeParts()
        self._reset()

    def _closeParts(self):
        for p in self._parts:
            if isinstance(p, Literal):
                p.close()
        if self._literal is not None:
            self._literal.close()

    @property
    def midCommand(self) -> bool:
        return bool(self._parts) or self._literal is not None or self._skip > 0 or self._longLine

    # Output

    def next(self):
        """
        The next event, or None when more input is needed.
        """
        buf = self._buf
        while True:
            if self._skip:
                n = min(self._skip, len(buf))
                del buf[:n]
                self._skip -= n
                if self._skip:
                    return None
                continue
            if self._literal is not None:
                n = min(self._remaining, len(buf))
                if n:
                    self._literal._write(bytes(buf[:n]) if n < len(buf) else bytes(buf))
                    del buf[:n]
                    self._remaining -= n
                if self._remaining:
                    return None
                self._parts.append(self._literal)
                self._literal = None
                continue
            end = buf.find(b"\n")
            if end < 0:
                if self.raw:
                    if len(buf) > self.maxLine:
                        buf.clear()
                        return FrameError(None, "Line too long", fatal=True)
                    return None
                if len(buf) + self._textSize > self.maxLine:
                    self._dropLongLine(bytes(buf))
                    buf.clear()
                return None
            line = bytes(buf[:end])
            del buf[:end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self.raw:
                return RawLine(line)
            if self._longLine:
                line = self._tail + line
                self._longLine = False
                self._tail = b""
                event = self._lineDone(line, dropped=True)
            else:
                event = self._lineDone(line)
            if event is not None:
                return event

    def _dropLongLine(self, data):
        if not self._longLine:
            self._longLine = True
            if self._tag is None and not self._parts:
                self._tag = _tagOf(data[:200])
            if self._error is None:
                self._error = FrameError(self._tag, "Command line too long", b"TOOBIG")
        self._tail = (self._tail + data)[-40:]

    def _lineDone(self, line, dropped=False):
        if not self._parts and self._tag is None:
            self._tag = _tagOf(line[:200])
        if not dropped:
            self._textSize += len(line) + 2
            if self._textSize > self.maxLine and self._error is None:
                self._error = FrameError(self._tag, "Command line too long", b"TOOBIG")
        m = _LITERAL_AT_END.search(line)
        if m is None:
            # End of the command.
            if self._error is not None:
                return self._finishError()
            self._parts.append(line)
            frame = Frame(self._parts, self._tag)
            self._parts = []
            self._reset()
            return frame
        size = int(m.group(2))
        sync = not m.group(3)
        binary = bool(m.group(1))
        if self._error is None:
            if size > self.maxLiteral or self._literalBytes + size > self.maxCommandLiterals:
                self._error = FrameError(self._tag, "Literal too big (limit %d bytes)" % self.maxLiteral, b"TOOBIG")
            elif len(self._parts) // 2 >= self.maxLiterals:
                self._error = FrameError(self._tag, "Too many literals in one command")
        if self._error is not None:
            if sync:
                # The client waits for "+" that will not come: the command
                # ends here for both sides (RFC 3501 s7.5).
                return self._finishError()
            if size > self.maxCommandLiterals:
                # Too big even to read and drop (an absurd count, or more
                # than a command could ever carry): the client would wait
                # for its answer while we swallow everything it sends.
                # RFC 9051 s7.1.5: BYE, and the connection is closed.
                self._closeParts()
                self._reset()
                self._buf.clear()
                return FrameError(None, "Literal of %d bytes is over the limit (%d bytes) and too big to skip"
                                  % (size, self.maxLiteral), b"TOOBIG", fatal=True)
            # RFC 7888 s4: a non-synchronizing literal is sent anyway; drop it.
            self._skip = size
            return None
        self._parts.append(line[:m.start()])
        self._literalBytes += size
        self._literal = Literal(size, binary)
        self._remaining = size
        if sync:
            return NeedContinuation(size)
        return None

    def _finishError(self):
        error = self._error
        self._closeParts()
        self._parts = []
        self._reset()
        return error


# Parsing


class Command:
    """
    One parsed command.  ``name`` is upper case without the UID prefix
    (``uid`` says whether it had one); the other attributes depend on the
    command (see :func:`parseCommand`).
    """

    def __init__(self, tag, name, uid=False, **fields):
        self.tag = tag
        self.name = name
        self.uid = uid
        self.__dict__.update(fields)

    def __repr__(self):
        fields = {k: v for k, v in self.__dict__.items() if k not in ("tag", "name", "uid")}
        return f"<Command {self.tag} {'UID ' if self.uid else ''}{self.name} {fields}>"

    def literals(self):
        seen = set()
        for value in self.__dict__.values():
            items = value if isinstance(value, list) else (value,)
            for item in items:
                if isinstance(item, AppendMessage):
                    # A CATENATE message's TEXT literals, and the message
                    # built from its parts (set by the session), if any.
                    for lit in item.literals():
                        if id(lit) not in seen:
                            seen.add(id(lit))
                            yield lit
                    continue
                if isinstance(item, Literal) and id(item) not in seen:
                    seen.add(id(item))
                    yield item

    def close(self):
        for lit in self.literals():
            lit.close()


class SeqSet:
    """
    A sequence set: sorted (lo, hi) ranges where ``hi`` may be ``STAR`` (-1,
    meaning "*").  ``saved`` is true for ``$`` (RFC 5182 SEARCHRES).
    """

    __slots__ = ("ranges", "saved")

    def __init__(self, ranges, saved=False):
        self.ranges = ranges
        self.saved = saved

    def resolve(self, largest):
        """
        Sorted, merged, disjoint (lo, hi) ranges of actual numbers with
        ``*`` as ``largest``.  Empty ranges are dropped (largest 0).
        """
        out = []
        for lo, hi in self.ranges:
            if largest <= 0 and STAR in (lo, hi):
                continue  # "*" in an empty mailbox names nothing
            lo = largest if lo == STAR else lo
            hi = largest if hi == STAR else hi
            if lo > hi:
                lo, hi = hi, lo
            if hi < 1:
                continue
            out.append((max(lo, 1), hi))
        out.sort()
        merged = []
        for lo, hi in out:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def __eq__(self, other):
        return isinstance(other, SeqSet) and self.ranges == other.ranges and self.saved == other.saved

    def __repr__(self):
        return "SeqSet(%r%s)" % (self.ranges, ", saved" if self.saved else "")


STAR = -1


_MONTH_NUMBERS = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}

_STATUS_ITEMS = {b"MESSAGES", b"RECENT", b"UIDNEXT", b"UIDVALIDITY", b"UNSEEN", b"HIGHESTMODSEQ", b"SIZE", b"DELETED", b"APPENDLIMIT"}
_STATUS_ITEMS.add(b"MAILBOXID")  # RFC 8474 s4.2

_NO_ARGS = {b"CAPABILITY", b"NOOP", b"LOGOUT", b"STARTTLS", b"CHECK", b"CLOSE", b"UNSELECT", b"EXPUNGE", b"IDLE", b"NAMESPACE"}


class _Parser:
    """Recursive descent over framed parts (segments and literals)."""

    def __init__(self, parts):
        self.parts = parts
        self.k = 0
        self.s = parts[0]
        self.i = 0

    # Low level

    def fail(self, text):
        raise ParseError(text)

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else None

    def atLiteral(self):
        return self.i == len(self.s) and self.k + 1 < len(self.parts)

    def atEnd(self):
        return self.i == len(self.s) and self.k + 1 >= len(self.parts)

    def end(self):
        if not self.atEnd():
            if self.atLiteral():
                self.fail("Unexpected literal")
            self.fail("Unexpected characters at end of command: %r" % self.s[self.i:self.i + 20].decode("ascii", "replace"))

    def sp(self):
        if self.peek() != 0x20:
            self.fail("Expected a space")
        self.i += 1

    def maybe(self, text: bytes) -> bool:
        if self.s[self.i:self.i + len(text)] == text:
            self.i += len(text)
            return True
        return False

    def maybeCI(self, text: bytes) -> bool:
        if self.s[self.i:self.i + len(text)].upper() == text:
            self.i += len(text)
            return True
        return False

    def expect(self, text: bytes, what=None):
        if not self.maybe(text):
            self.fail("Expected %s" % (what or repr(text.decode())))

    def takeLiteral(self) -> Literal:
        lit = self.parts[self.k + 1]
        self.k += 2
        self.s = self.parts[self.k]
        self.i = 0
        return lit

    def _run(self, chars):
        start = self.i
        s = self.s
        n = len(s)
        i = start
        while i < n and s[i] in chars:
            i += 1
        self.i = i
        return s[start:i]

    # Tokens

    def word(self) -> bytes:
        """The atom characters at the current position (perhaps none), in upper case."""
        return self._run(ATOM_CHARS).upper()

    def atom(self, what="an atom") -> bytes:
        value = self._run(ATOM_CHARS)
        if not value:
            self.fail("Expected %s" % what)
        return value

    def number(self, what="a number", nz=False) -> int:
        value = self._run(_DIGITS)
        if not value or len(value) > 20:
            self.fail("Expected %s" % what)
        n = int(value)
        if nz and n == 0:
            self.fail("Expected a non-zero number")
        return n

    def quoted(self) -> bytes:
        s = self.s
        i = self.i + 1
        out = bytearray()
        while True:
            j = i
            while j < len(s) and s[j] not in (0x22, 0x5C):
                j += 1
            out += s[i:j]
            if j >= len(s):
                self.fail("Unterminated quoted string")
            if s[j] == 0x22:
                self.i = j + 1
                value = bytes(out)
                # RFC 9051 s9: QUOTED-CHAR is a TEXT-CHAR (CHAR, so no NUL,
                # without CR and LF) or UTF-8 (UTF8-2/3/4): a NUL, a bare CR
                # or broken UTF-8 is a syntax error (BAD), not a name or a
                # password to look up.
                if b"\0" in value or b"\r" in value:
                    self.fail("NUL and CR are not allowed in a quoted string")
                if not value.isascii():
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        self.fail("Quoted string is not valid UTF-8 (use a literal for other 8-bit data)")
                return value
            if j + 1 >= len(s) or s[j + 1] not in (0x22, 0x5C):
                self.fail("Bad escape in quoted string")
            out.append(s[j + 1])
            i = j + 2

    def string(self, what="a string") -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        if self.atLiteral():
            return self.takeLiteral().bytes()
        self.fail("Expected %s" % what)

    def astring(self, what="a string") -> bytes:
        if self.peek() == 0x22 or self.atLiteral():
            return self.string(what)
        value = self._run(ASTRING_CHARS)
        if not value:
            self.fail("Expected %s" % what)
        return value

    def nstring(self):
        if self.maybeCI(b"NIL"):
            return None
        return self.string()

    def mailbox(self) -> bytes:
        return self.astring("a mailbox name")

    def listMailbox(self) -> bytes:
        # list-mailbox = 1*list-char / string; list-char adds % * ]
        if self.peek() == 0x22 or self.atLiteral():
            return self.string("a mailbox pattern")
        value = self._run(_LIST_CHARS)
        if not value:
            self.fail("Expected a mailbox pattern")
        return value

    def flag(self, allowStar=False) -> str:
        if self.maybe(b"\\"):
            if allowStar and self.maybe(b"*"):
                return "\\*"
            name = self.atom("a flag name").decode("ascii")
            canonical = _SYSTEM_FLAG_NAMES.get(name.lower())
            if canonical is None:
                # RFC 3501 s2.3.2: other \ flags are reserved; keep as given.
                return "\\" + name
            return canonical
        return self.atom("a flag").decode("ascii")

    def flagList(self) -> list:
        self.expect(b"(", "a flag list")
        flags = []
        if self.maybe(b")"):
            return flags
        while True:
            flags.append(self.flag())
            if self.maybe(b")"):
                return flags
            self.sp()

    def seqSet(self) -> SeqSet:
        if self.maybe(b"$"):
            return SeqSet([], saved=True)
        ranges = []
        while True:
            lo = self._seqNumber()
            hi = lo
            if self.maybe(b":"):
                hi = self._seqNumber()
            if lo != STAR and hi != STAR and lo > hi:
                lo, hi = hi, lo
            elif lo == STAR and hi != STAR:
                lo, hi = hi, lo
            ranges.append((lo, hi))
            if not self.maybe(b","):
                return SeqSet(ranges)

    def _seqNumber(self):
        if self.maybe(b"*"):
            return STAR
        n = self._run(_DIGITS)
        if not n or len(n) > 10 or int(n) == 0 or int(n) > 0xFFFFFFFF:
            self.fail("Expected a sequence set (non-zero numbers up to 4294967295, ranges a:b, *)")
        return int(n)

    def date(self):
        import datetime

        q = self.maybe(b'"')
        m = _DATE.match(self.s, self.i)
        if not m:
            self.fail("Expected a date like 1-Feb-2024")
        self.i = m.end()
        if q:
            self.expect(b'"')
        month = _MONTH_NUMBERS.get(m.group(2).upper())
        try:
            return datetime.date(int(m.group(3)), month or 0, int(m.group(1)))
        except (ValueError, TypeError):
            self.fail("Not a valid date")

    def dateTime(self) -> float:
        m = _DATE_TIME.match(self.s, self.i)
        if not m:
            self.fail('Expected a date-time like "01-Feb-2024 10:00:00 +0000"')
        self.i = m.end()
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        month = _MONTH_NUMBERS.get(mon.upper())
        if not month or not (1 <= int(day) <= 31) or int(hh) > 23 or int(mm) > 59 or int(ss) > 60:
            self.fail("Not a valid date-time")
        zone = (int(zh) * 60 + int(zm)) * (-1 if sign == b"-" else 1)
        return dateTimeToEpoch(int(day), month, int(year), int(hh), int(mm), int(ss), zone)

    def parenList(self, item):
        """``(item item ...)``; returns a list.  Empty lists allowed."""
        self.expect(b"(", "'('")
        out = []
        if self.maybe(b")"):
            return out
        while True:
            out.append(item())
            if self.maybe(b")"):
                return out
            self.sp()



_DIGITS = frozenset(b"0123456789")
_LIST_CHARS = ASTRING_CHARS | {ord("%"), ord("*")}
_DATE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
_DATE_TIME = re.compile(rb'"([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"')
_SYSTEM_FLAG_NAMES = {"seen": "\\Seen", "answered": "\\Answered", "flagged": "\\Flagged", "deleted": "\\Deleted",
                      "draft": "\\Draft", "recent": "\\Recent"}


def parseCommand(frame) -> Command:
    """
    Parse one framed command.

    @param frame: a :class:`Frame` (or a list of parts, or bytes for a
        command without literals).
    @raise ParseError: with ``tag`` (None if the tag itself is bad) and
        ``name`` (the command name if it was read).
    """
    if isinstance(frame, (bytes, bytearray)):
        parts = [bytes(frame)]
    elif isinstance(frame, Frame):
        parts = frame.parts
    else:
        parts = frame
    p = _Parser(parts)
    tag = p._run(_TAG_CHARS)
    if not tag:
        raise ParseError("Missing or bad command tag")
    tag = tag.decode("ascii")
    try:
        if p.peek() != 0x20:
            raise ParseError("Expected a space and a command after the tag")
        p.i += 1
        word = p._run(_FETCH_NAME_CHARS).upper()
        if not word:
            raise ParseError("Missing command name")
        uid = False
        if word == b"UID":
            p.sp()
            uid = True
            word = p._run(_FETCH_NAME_CHARS).upper()
            if word not in (b"FETCH", b"SEARCH", b"STORE", b"COPY", b"MOVE", b"EXPUNGE", b"SORT", b"THREAD"):
                raise ParseError("UID must be followed by FETCH, SEARCH, SORT, THREAD, STORE, COPY, MOVE or EXPUNGE",
                                 name="UID")
        name = word.decode("ascii", "replace")
        handler = _COMMANDS.get(word)
        if handler is None:
            raise ParseError("Unknown command %s" % name[:40])
        try:
            fields = handler(p, uid)
            p.end()
        except ParseError as e:
            e.name = e.name or name
            raise
        return Command(tag, name, uid, **fields)
    except ParseError as e:
        e.tag = tag
        for part in parts[1::2]:
            part.close()
        raise


_TAG_CHARS = ASTRING_CHARS - {ord("+")}


def _noArgs(p, uid):
    return {}


def _login(p, uid):
    p.sp()
    user = p.astring("a user name")
    p.sp()
    password = p.astring("a password")
    return {"user": user, "password": password}


def _authenticate(p, uid):
    p.sp()
    mechanism = p.atom("a SASL mechanism").upper().decode("ascii")
    initial = None
    if p.peek() == 0x20:
        p.sp()
        # RFC 4959: initial response, base64 or "=" for empty.
        initial = p._run(_BASE64_CHARS)
        if not initial:
            p.fail("Expected a base64 initial response")
    return {"mechanism": mechanism, "initial": initial}


def _enable(p, uid):
    caps = []
    while p.peek() == 0x20:
        p.sp()
        caps.append(p.atom("a capability").upper().decode("ascii"))
    if not caps:
        p.fail("ENABLE needs at least one capability")
    return {"capabilities": caps}


def _compress(p, uid):
    # RFC 4978 s5: compress = "COMPRESS" SP algorithm
    p.sp()
    return {"mechanism": p.atom("a compression mechanism").upper().decode("ascii")}


def _id(p, uid):
    p.sp()
    if p.maybeCI(b"NIL"):
        return {"params": None}
    p.expect(b"(", "NIL or a parameter list")
    params = []
    if not p.maybe(b")"):
        while True:
            key = p.string()
            p.sp()
            params.append((key, p.nstring()))
            if p.maybe(b")"):
                break
            p.sp()
    if len(params) > 30:
        p.fail("Too many ID parameters")
    return {"params": params}


def _select(p, uid):
    p.sp()
    mailbox = p.mailbox()
    condstore = False
    qresync = None
    if p.peek() == 0x20:
        p.sp()
        p.expect(b"(", "'(' before SELECT parameters")
        while True:
            word = p.atom("a SELECT parameter").upper()
            if word == b"CONDSTORE":
                condstore = True
            elif word == b"QRESYNC":
                # RFC 7162 s3.2.5: (uidvalidity modseq [known-uids [(seqs uids)]])
                p.sp()
                p.expect(b"(")
                validity = p.number("a UIDVALIDITY", nz=True)
                p.sp()
                modseq = p.number("a mod-sequence")
                known = None
                match = None
                if p.peek() == 0x20:
                    p.sp()
                    if p.peek() != 0x28:
                        known = p.seqSet()
                        if p.peek() == 0x20:
                            p.sp()
                    if p.maybe(b"("):
                        seqs = p.seqSet()
                        p.sp()
                        uids = p.seqSet()
                        p.expect(b")")
                        match = (seqs, uids)
                p.expect(b")")
                qresync = (validity, modseq, known, match)
            else:
                p.fail("Unknown SELECT parameter %s" % word.decode("ascii", "replace"))
            if p.maybe(b")"):
                break
            p.sp()
    return {"mailbox": mailbox, "condstore": condstore, "qresync": qresync}


def _mailboxOnly(p, uid):
    p.sp()
    return {"mailbox": p.mailbox()}


def _create(p, uid):
    p.sp()
    mailbox = p.mailbox()
    if p.peek() == 0x20:
        # RFC 4466 create-param; we accept and ignore them (CREATE-SPECIAL-USE
        # is not advertised).
        p.sp()
        _skipParenthesized(p)
    return {"mailbox": mailbox}


def _skipParenthesized(p, depth=0):
    if depth > 20:
        p.fail("Parameters nested too deeply")
    p.expect(b"(")
    while not p.maybe(b")"):
        if p.peek() == 0x28:
            _skipParenthesized(p, depth + 1)
        elif p.peek() == 0x20:
            p.i += 1
        elif p.peek() == 0x22 or p.atLiteral():
            p.string()
        else:
            if not p._run(ASTRING_CHARS | {ord("\\")}):
                p.fail("Bad parameter list")


def _rename(p, uid):
    p.sp()
    old = p.mailbox()
    p.sp()
    return {"old": old, "new": p.mailbox()}


def _list(p, uid):
    p.sp()
    selection = []
    if p.peek() == 0x28:
        selection = [w.upper().decode("ascii") for w in p.parenList(lambda: p.atom("a selection option"))]
        p.sp()
    reference = p.mailbox()
    p.sp()
    if p.peek() == 0x28:
        patterns = p.parenList(p.listMailbox)
        if not patterns:
            p.fail("Expected at least one pattern")
    else:
        patterns = [p.listMailbox()]
    returns = []
    statusItems = None
    if p.peek() == 0x20:
        p.sp()
        if not p.maybeCI(b"RETURN"):
            p.fail("Expected RETURN")
        p.sp()
        p.expect(b"(")
        if not p.maybe(b")"):
            while True:
                word = p.atom("a return option").upper().decode("ascii")
                if word == "STATUS":
                    p.sp()
                    statusItems = _statusItems(p)
                returns.append(word)
                if p.maybe(b")"):
                    break
                p.sp()
    return {"selection": selection, "reference": reference, "patterns": patterns, "returns": returns,
            "statusItems": statusItems, "extended": bool(selection or returns or len(patterns) > 1)}


def _lsub(p, uid):
    p.sp()
    reference = p.mailbox()
    p.sp()
    return {"reference": reference, "patterns": [p.listMailbox()]}


def _statusItems(p):
    items = p.parenList(lambda: p.atom("a status item").upper())
    if not items:
        p.fail("Expected at least one status item")
    for item in items:
        if item not in _STATUS_ITEMS:
            p.fail("Unknown status item %s" % item.decode("ascii", "replace"))
    return [i.decode() for i in items]


def _status(p, uid):
    p.sp()
    mailbox = p.mailbox()
    p.sp()
    return {"mailbox": mailbox, "items": _statusItems(p)}


class AppendMessage:
    """
    One message of an APPEND: its flags, its date-time (or None), the
    :class:`Literal`, and whether it came as RFC 6855's ``UTF8 (~{n})``.
    A CATENATE message (RFC 4469) has ``message`` None until the session
    builds it, and ``parts``: a list of :class:`CatPart`.
    """

    __slots__ = ("flags", "date", "message", "utf8", "parts")

    def __init__(self, flags, date, message, utf8=False, parts=None):
        self.flags = flags
        self.date = date
        self.message = message
        self.utf8 = utf8
        self.parts = parts

    def literals(self):
        if self.message is not None:
            yield self.message
        for part in self.parts or ():
            if part.literal is not None:
                yield part.literal

    def __repr__(self):
        if self.parts is not None:
            return f"<AppendMessage {self.flags} {self.date} CATENATE {self.parts!r}>"
        return f"<AppendMessage {self.flags} {self.date} {self.message!r}>"


class CatPart:
    """
    One part of a CATENATE (RFC 4469 s5): ``literal`` for ``TEXT {n}`` (with
    ``utf8`` for RFC 6855's ``UTF8 (~{n})``), else ``url`` (bytes, as sent).
    """

    __slots__ = ("literal", "url", "utf8")

    def __init__(self, literal=None, url=None, utf8=False):
        self.literal = literal
        self.url = url
        self.utf8 = utf8

    def __repr__(self):
        return f"<CatPart {self.literal!r}>" if self.literal is not None else f"<CatPart URL {self.url!r}>"


def _utf8Literal(p):
    # RFC 6855 s4: "UTF8" SP "(" literal8 ")", after "UTF8 (" was read.
    if not p.atLiteral():
        p.fail("Expected a literal8 after UTF8 (")
    message = p.takeLiteral()
    if not message.binary:
        message.close()
        p.fail("APPEND UTF8 needs a literal8 (~{n})")
    p.expect(b")", "')' after the UTF8 message")
    return message


def _catenate(p):
    # RFC 4469 s5: "CATENATE" SP "(" cat-part *(SP cat-part) ")", after
    # "CATENATE (" was read; cat-part = text-literal / url;
    # text-literal = "TEXT" SP literal (literal8 taken too, as with
    # BINARY's append-data); url = "URL" SP astring; RFC 6855 s4:
    # cat-part =/ "UTF8" SP "(" literal8 ")".
    parts = []
    try:
        while True:
            if p.maybeCI(b"TEXT "):
                if not p.atLiteral():
                    p.fail("Expected a literal after TEXT")
                parts.append(CatPart(literal=p.takeLiteral()))
            elif p.maybeCI(b"URL "):
                parts.append(CatPart(url=p.astring("a URL")))
            elif p.maybeCI(b"UTF8 ("):
                parts.append(CatPart(literal=_utf8Literal(p), utf8=True))
            else:
                p.fail("Expected TEXT, URL or UTF8 in CATENATE")
            if p.maybe(b")"):
                return parts
            p.sp()
    except ParseError:
        for part in parts:
            if part.literal is not None:
                part.literal.close()
        raise


def _append(p, uid):
    # RFC 3501 s6.3.11, RFC 3502 s6.3.11 (MULTIAPPEND):
    # append = "APPEND" SP mailbox 1*append-message
    # append-message = append-opts SP append-data
    # append-opts = [SP flag-list] [SP date-time]
    p.sp()
    mailbox = p.mailbox()
    messages = []
    while True:
        p.sp()
        flags = []
        date = None
        if p.peek() == 0x28:
            flags = p.flagList()
            p.sp()
        if p.peek() == 0x22:
            date = p.dateTime()
            p.sp()
        if p.maybeCI(b"UTF8 ("):
            messages.append(AppendMessage(flags, date, _utf8Literal(p), utf8=True))
        elif p.maybeCI(b"CATENATE ("):
            messages.append(AppendMessage(flags, date, None, parts=_catenate(p)))
        else:
            if not p.atLiteral():
                p.fail("Expected the message as a literal")
            messages.append(AppendMessage(flags, date, p.takeLiteral()))
        if p.peek() != 0x20:
            break
    # ``flags``, ``date`` and ``message`` are those of the first message.
    first = messages[0]
    return {"mailbox": mailbox, "messages": messages, "flags": first.flags, "date": first.date,
            "message": first.message}


def parseUrlSection(text: bytes):
    """
    The :class:`Section` of an IMAP URL's ``;SECTION=`` (RFC 5092 s3, the
    part in brackets of ``BODY[...]``, percent-decoded already) for
    CATENATE; raises ParseError.
    """
    p = _Parser([text])
    section = fetchitems.section(p)
    p.end()
    return section


def _store(p, uid):
    p.sp()
    seqset = p.seqSet()
    p.sp()
    unchangedSince = None
    if p.maybe(b"("):
        word = p.atom().upper()
        if word != b"UNCHANGEDSINCE":
            p.fail("Unknown STORE modifier %s" % word.decode("ascii", "replace"))
        p.sp()
        unchangedSince = p.number("a mod-sequence")
        p.expect(b")")
        p.sp()
    mode = "set"
    if p.maybe(b"+"):
        mode = "add"
    elif p.maybe(b"-"):
        mode = "remove"
    word = p.atom("FLAGS, +FLAGS or -FLAGS").upper()
    if word not in (b"FLAGS", b"FLAGS.SILENT"):
        p.fail("Expected FLAGS, +FLAGS or -FLAGS (optionally .SILENT)")
    p.sp()
    if p.peek() == 0x28:
        flags = p.flagList()
    else:
        flags = [p.flag()]
        while p.peek() == 0x20:
            p.sp()
            flags.append(p.flag())
    return {"seqset": seqset, "mode": mode, "silent": word.endswith(b".SILENT"), "flags": flags,
            "unchangedSince": unchangedSince}


def _copy(p, uid):
    p.sp()
    seqset = p.seqSet()
    p.sp()
    return {"seqset": seqset, "mailbox": p.mailbox()}


def _expunge(p, uid):
    if uid:
        p.sp()
        return {"seqset": p.seqSet()}
    return {}


def _quotaRoot(p, uid):
    """RFC 9208 s4.2 GETQUOTA quota-root (an astring)."""
    p.sp()
    return {"root": p.astring("a quota root")}


def _setQuota(p, uid):
    """RFC 9208 s4.4 SETQUOTA quota-root (resource limit ...): parsed, then refused."""
    p.sp()
    root = p.astring("a quota root")
    p.sp()
    p.expect(b"(")
    limits = []
    if not p.maybe(b")"):
        while True:
            name = p.atom("a resource name").upper()
            p.sp()
            limits.append((name.decode("ascii"), p.number("a limit")))
            if p.maybe(b")"):
                break
            p.sp()
    return {"root": root, "limits": limits}


_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")

_COMMANDS = {name: _noArgs for name in _NO_ARGS}
_COMMANDS.update({
    b"LOGIN": _login,
    b"AUTHENTICATE": _authenticate,
    b"ENABLE": _enable,
    b"COMPRESS": _compress,
    b"ID": _id,
    b"SELECT": _select,
    b"EXAMINE": _select,
    b"CREATE": _create,
    b"DELETE": _mailboxOnly,
    b"SUBSCRIBE": _mailboxOnly,
    b"UNSUBSCRIBE": _mailboxOnly,
    b"RENAME": _rename,
    b"LIST": _list,
    b"LSUB": _lsub,
    b"STATUS": _status,
    b"APPEND": _append,
    b"SEARCH": searchkeys.search,
    b"SORT": searchkeys.sort,
    b"THREAD": searchkeys.thread,
    b"CANCELUPDATE": searchkeys.cancelUpdate,  # RFC 5267 s4.3.5
    b"FETCH": fetchitems.fetch,
    b"STORE": _store,
    b"COPY": _copy,
    b"MOVE": _copy,
    b"EXPUNGE": _expunge,
    b"GETQUOTA": _quotaRoot,  # RFC 9208
    b"GETQUOTAROOT": _mailboxOnly,
    b"SETQUOTA": _setQuota,
    b"NOTIFY": notifyspec.parse,  # RFC 5465
})
