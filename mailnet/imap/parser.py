"""
Sans-I/O IMAP command reader and parser.

Two layers, no I/O in either:

* :class:`CommandReader` (in :mod:`mailnet.imap.framing`) frames the byte stream into commands: lines and
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
  :mod:`mailnet.imap.fetchitems`; the APPEND (CATENATE) arguments in
  :mod:`mailnet.imap.appendargs`.

Large literals (APPEND) are spooled to an anonymous temporary file, not kept
in memory.
"""

from __future__ import annotations

import re

from mailnet.imap import appendargs, fetchitems, framing, notifyspec, searchkeys
from mailnet.imap.fetchitems import FETCH_NAME_CHARS as _FETCH_NAME_CHARS
from mailnet.imap.serialize import ASTRING_CHARS, ATOM_CHARS, MONTHS, dateTimeToEpoch

# The FETCH item classes, formerly defined here (imported from here by others).
FetchAtt = fetchitems.FetchAtt
Section = fetchitems.Section
# The APPEND / CATENATE grammar, formerly defined here.
AppendMessage = appendargs.AppendMessage
CatPart = appendargs.CatPart
parseUrlSection = appendargs.parseUrlSection
# The framing layer, formerly defined here.
SPOOL_THRESHOLD = framing.SPOOL_THRESHOLD
Literal = framing.Literal
Frame = framing.Frame
NeedContinuation = framing.NeedContinuation
FrameError = framing.FrameError
RawLine = framing.RawLine
CommandReader = framing.CommandReader
_TAG_CHARS = framing._TAG_CHARS


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
    b"APPEND": appendargs.append,
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
