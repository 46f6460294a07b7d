"""
The APPEND command's arguments (RFC 3501 s6.3.11, RFC 3502 MULTIAPPEND,
RFC 4469 CATENATE, RFC 6855 s4 ``UTF8 (~{n})``) and the ``;SECTION=`` of a
CATENATE URL, without I/O.  Like :mod:`mailnet.imap.fetchitems`, the
functions take the recursive-descent parser of :mod:`mailnet.imap.parser`;
:func:`mailnet.imap.parser.parseCommand` dispatches to :func:`append`.
The names stay importable from :mod:`mailnet.imap.parser`.
"""

from __future__ import annotations

from mailnet.imap import fetchitems


class AppendMessage:
    """
    One message of an APPEND: its flags, its date-time (or None), the
    :class:`mailnet.imap.parser.Literal`, and whether it came as RFC 6855's ``UTF8 (~{n})``.
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
    from mailnet.imap.parser import ParseError

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


def append(p, uid):
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
    The :class:`mailnet.imap.fetchitems.Section` of an IMAP URL's ``;SECTION=`` (RFC 5092 s3, the
    part in brackets of ``BODY[...]``, percent-decoded already) for
    CATENATE; raises ParseError.
    """
    from mailnet.imap.parser import _Parser

    p = _Parser([text])
    section = fetchitems.section(p)
    p.end()
    return section
