"""
The SMTP wire grammar, without I/O.

* :func:`parseCommand`: one command line (bytes, CRLF removed) -> a
  :class:`Command`, or :class:`ParseError` carrying the reply to send.
* :func:`parsePath`, :func:`parseParams`, :func:`parseMailParams`,
  :func:`parseRcptParams`: the address and ESMTP parameter grammar of
  RFC 5321 s4.1.2, with quoted local parts and UTF-8 (RFC 6531), and the
  parameters of SIZE, BODY, SMTPUTF8, AUTH and DSN.
* :class:`BodyReader`: the message body of DATA (dot-stuffed, ended by
  ``CRLF.CRLF``) or of BDAT chunks, checked and unstuffed a buffer at a
  time with ``bytes`` methods, never a line at a time in Python.

Nothing here raises anything but :class:`ParseError` for any input.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from mailnet.mail.codecs import decodeXtext, isXtext
from mailnet.smtp import replies
from mailnet.smtp.replies import Reply

MAX_LOCAL_PART = 64  # RFC 5321 s4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 s4.5.3.1.2
MAX_PATH = 256  # RFC 5321 s4.5.3.1.3
MAX_ENVID = 100  # RFC 3461 s4.4
MAX_ORCPT = 500  # RFC 3461 s4.2


class ParseError(Exception):
    """Bad syntax; ``reply`` is what the client gets."""

    def __init__(self, reply: Reply):
        super().__init__(reply.text)
        self.reply = reply


class Command:
    """
    One parsed command.

    @ivar verb: upper-case command name (``"MAIL"``).
    @ivar arg: the text after the verb, stripped (str).
    """

    __slots__ = ("verb", "arg")

    def __init__(self, verb: str, arg: str = ""):
        self.verb = verb
        self.arg = arg

    def __repr__(self):
        return f"Command({self.verb!r}, {self.arg!r})"


_VERB = re.compile(r"[A-Za-z]{1,16}")


def parseCommand(line: bytes) -> Command:
    """
    Split a command line into verb and argument.

    @param line: the line without its CRLF.
    @raise ParseError: not UTF-8, control characters, no verb.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(replies.BAD_UTF8)
    verb, _, arg = text.partition(" ")
    if not _VERB.fullmatch(verb):
        raise ParseError(replies.UNRECOGNIZED)
    if _CONTROL.search(arg):
        raise ParseError(replies.SYNTAX.withText("Control characters are not allowed in commands"))
    return Command(verb.upper(), arg.strip(" "))


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# RFC 5321 s4.1.2 (with RFC 6531 s3.3: UTF-8 in atext, qtext and domains)
_NONASCII = "\u0080-\U0010ffff"
_ATEXT = rf"[A-Za-z0-9!#$%&'*+\-/=?^_`{{|}}~{_NONASCII}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_NONASCII}]|\\[\x20-\x7e])*"'
_LETDIG = rf"[A-Za-z0-9{_NONASCII}]"
_SUBDOMAIN = rf"{_LETDIG}(?:[A-Za-z0-9\-{_NONASCII}]*{_LETDIG})?"
_DOMAIN = rf"{_SUBDOMAIN}(?:\.{_SUBDOMAIN})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_PATH = re.compile(
    rf"<(?:@{_DOMAIN}(?:,@{_DOMAIN})*:)?"  # source route: accepted, ignored (RFC 5321 s4.1.2, C.)
    rf"(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_LITERAL})>"
)
_DOT_STRING_RE = re.compile(_DOT_STRING)
_DOMAIN_RE = re.compile(_DOMAIN)
_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_ESMTP_VALUE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_NONASCII}]+")
_GENERAL_LITERAL = re.compile(r"[A-Za-z0-9\-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")


def _checkLiteral(literal: str) -> bool:
    """RFC 5321 s4.1.3 address literals: IPv4, IPv6:..., or tag:content."""
    inner = literal[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            ipaddress.IPv6Address(inner[5:])
            return True
        except ValueError:
            return False
    if inner[:1].isdigit() and ":" not in inner:
        try:
            ipaddress.IPv4Address(inner)
            return True
        except ValueError:
            return False
    return bool(_GENERAL_LITERAL.fullmatch(inner))


def _canonicalLocal(local: str) -> str:
    """
    A quoted local part whose content is a plain dot-string loses its quotes
    (``"john"`` is ``john``, RFC 5321 s4.1.2); others keep minimal quoting.
    """
    if not local.startswith('"'):
        return local
    content = re.sub(r"\\(.)", r"\1", local[1:-1])
    if _DOT_STRING_RE.fullmatch(content):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parsePath(text: str, allowNull: bool, allowPostmaster: bool = False) -> tuple[str, str]:
    """
    Parse ``<path> [params]`` (the argument after ``FROM:`` or ``TO:``).

    @return: ``(address, rest)``: the mailbox as ``local@domain`` (domain
        lower-cased, local part as given, unneeded quotes removed), ``""``
        for the null path ``<>``, or ``"postmaster"`` for ``<Postmaster>``;
        and the text after the path (parameters), stripped.
    @raise ParseError: 501 5.1.3 (or 5.1.7 for a sender) on bad syntax.
    """
    bad = replies.BAD_SENDER_ADDRESS if allowNull else replies.BAD_ADDRESS
    text = text.lstrip(" ")
    if not text.startswith("<"):
        raise ParseError(bad.withText("Bad address syntax: the address must be inside <>"))
    if allowNull and text.startswith("<>"):
        address, end = "", 2
    elif allowPostmaster and text[:12].lower() == "<postmaster>":
        # RFC 5321 s4.5.1: <Postmaster> without a domain must be accepted
        address, end = "postmaster", 12
    else:
        match = _PATH.match(text)
        if match is None:
            raise ParseError(bad)
        local, domain = match.group("local"), match.group("domain")
        if domain.startswith("["):
            if not _checkLiteral(domain):
                raise ParseError(bad.withText("Bad address literal"))
        else:
            domain = domain.lower()
        local = _canonicalLocal(local)
        if len(local.encode("utf-8")) > MAX_LOCAL_PART or len(domain.encode("utf-8")) > MAX_DOMAIN:
            raise ParseError(bad.withText("Address too long (RFC 5321 s4.5.3.1)"))
        address, end = f"{local}@{domain}", match.end()
        if len(address.encode("utf-8")) + 2 > MAX_PATH:
            raise ParseError(bad.withText("Address too long (RFC 5321 s4.5.3.1)"))
    rest = text[end:]
    if rest and not rest.startswith(" "):
        raise ParseError(bad)
    return address, rest.strip(" ")


def parseParams(text: str) -> dict[str, str | None]:
    """
    ESMTP parameters (RFC 5321 s4.1.2 Mail-parameters): ``KEY[=value]``
    separated by spaces; keys upper-cased.

    @raise ParseError: 501 on bad syntax or a repeated keyword.
    """
    params: dict[str, str | None] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not _ESMTP_KEYWORD.fullmatch(key) or (eq and not _ESMTP_VALUE.fullmatch(value)):
            raise ParseError(replies.SYNTAX.withText(f"Bad parameter syntax: {item[:40]}"))
        key = key.upper()
        if key in params:
            raise ParseError(replies.SYNTAX.withText(f"Parameter {key} given twice"))
        params[key] = value if eq else None
    return params


class MailParams:
    """The understood MAIL parameters (RFC 1870, 6152, 6531, 4954, 3461)."""

    __slots__ = ("size", "body", "smtputf8", "ret", "envid", "auth")

    def __init__(self):
        self.size = None
        self.body = "7BIT"
        self.smtputf8 = False
        self.ret = None
        self.envid = None
        self.auth = None


class RcptParams:
    """The understood RCPT parameters (RFC 3461 s4.1, s4.2)."""

    __slots__ = ("notify", "orcpt")

    def __init__(self):
        self.notify = None
        self.orcpt = None


def _value(params, key):
    value = params[key]
    if value is None:
        raise ParseError(replies.SYNTAX.withText(f"{key} needs a value"))
    return value


def parseMailParams(params: dict) -> MailParams:
    """
    @raise ParseError: 501 for a bad value of a known parameter, 555 for an
        unknown parameter.
    """
    out = MailParams()
    for key in params:
        if key == "SIZE":
            # RFC 1870 s3: size-value ::= 1*20DIGIT
            value = _value(params, key)
            if not value.isascii() or not value.isdigit() or len(value) > 20:
                raise ParseError(replies.SYNTAX.withText("SIZE needs a number (RFC 1870)"))
            out.size = int(value)
        elif key == "BODY":
            # RFC 6152 s2: BODY=7BIT / BODY=8BITMIME (BINARYMIME is not offered)
            value = _value(params, key).upper()
            if value not in ("7BIT", "8BITMIME"):
                raise ParseError(replies.BAD_PARAMETER.withText(f"BODY={value[:20]} not supported"))
            out.body = value
        elif key == "SMTPUTF8":
            # RFC 6531 s3.4: no value
            if params[key] is not None:
                raise ParseError(replies.SYNTAX.withText("SMTPUTF8 takes no value"))
            out.smtputf8 = True
        elif key == "RET":
            # RFC 3461 s4.3
            value = _value(params, key).upper()
            if value not in ("FULL", "HDRS"):
                raise ParseError(replies.SYNTAX.withText("RET must be FULL or HDRS (RFC 3461 s4.3)"))
            out.ret = value
        elif key == "ENVID":
            # RFC 3461 s4.4: xtext, at most 100 characters; kept as received
            value = _value(params, key)
            if len(value) > MAX_ENVID or not isXtext(value):
                raise ParseError(replies.SYNTAX.withText("Bad ENVID (RFC 3461 s4.4)"))
            out.envid = value
        elif key == "AUTH":
            # RFC 4954 s5: AUTH=<mailbox> or AUTH=<>; xtext
            value = _value(params, key)
            if not isXtext(value):
                raise ParseError(replies.SYNTAX.withText("Bad AUTH parameter (RFC 4954 s5)"))
            out.auth = decodeXtext(value)
        else:
            raise ParseError(replies.BAD_PARAMETER.withText(f"MAIL parameter {key[:20]} not recognized"))
    return out


_NOTIFY_VALUES = {"SUCCESS", "FAILURE", "DELAY"}
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")


def parseRcptParams(params: dict, smtputf8: bool = False) -> RcptParams:
    """
    @raise ParseError: 501 for a bad value, 555 for an unknown parameter.
    """
    out = RcptParams()
    for key in params:
        if key == "NOTIFY":
            # RFC 3461 s4.1: NEVER, or a list of SUCCESS, FAILURE, DELAY
            items = _value(params, key).upper().split(",")
            if items == ["NEVER"]:
                out.notify = ["NEVER"]
            elif items and set(items) <= _NOTIFY_VALUES and len(set(items)) == len(items):
                out.notify = [v for v in ("SUCCESS", "FAILURE", "DELAY") if v in items]
            else:
                raise ParseError(replies.SYNTAX.withText("Bad NOTIFY (RFC 3461 s4.1)"))
        elif key == "ORCPT":
            # RFC 3461 s4.2: addr-type ";" xtext (RFC 6533 allows UTF-8 with
            # SMTPUTF8); at most 500 characters; kept as received
            value = _value(params, key)
            addrType, sep, address = value.partition(";")
            ok = sep and _ADDR_TYPE.fullmatch(addrType) and address and len(value) <= MAX_ORCPT
            if ok and not isXtext(address):
                ok = smtputf8 and not address.isascii()
            if not ok:
                raise ParseError(replies.SYNTAX.withText("Bad ORCPT (RFC 3461 s4.2)"))
            out.orcpt = value
        else:
            raise ParseError(replies.BAD_PARAMETER.withText(f"RCPT parameter {key[:20]} not recognized"))
    return out


def parseBdat(arg: str) -> tuple[int, bool]:
    """RFC 3030 s2: ``BDAT chunk-size [LAST]`` -> (size, last)."""
    parts = arg.split()
    if not 1 <= len(parts) <= 2 or not parts[0].isascii() or not parts[0].isdigit() or len(parts[0]) > 15:
        raise ParseError(replies.SYNTAX.withText("Syntax: BDAT <size> [LAST]"))
    if len(parts) == 2 and parts[1].upper() != "LAST":
        raise ParseError(replies.SYNTAX.withText("Syntax: BDAT <size> [LAST]"))
    return int(parts[0]), len(parts) == 2


def parseHelo(arg: str) -> str:
    """
    The client's name from HELO/EHLO: one word, a domain or an address
    literal.  Lenient as RFC 5321 s4.1.4 asks (names that do not resolve
    or carry underscores are common); only an empty or multi-word argument
    is refused.
    """
    parts = arg.split()
    if len(parts) != 1:
        raise ParseError(replies.SYNTAX.withText("Syntax: EHLO <domain>"))
    return parts[0]


def decodeBase64(text: str) -> bytes:
    """RFC 4954 s4: a client response; ``=`` alone is the empty response."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ParseError(replies.BAD_BASE64)


def isDomain(text: str) -> bool:
    return bool(_DOMAIN_RE.fullmatch(text))


# Message bodies


class BodyReader:
    """
    Checks and decodes one message body, buffer by buffer.

    For DATA (``dotted=True``), :meth:`feed` looks for the end-of-data line
    (RFC 5321 s4.1.1.4), removes dot-stuffing (s4.5.2), and returns the
    bytes that follow the end marker (pipelined commands).  For BDAT
    (``dotted=False``) the caller cuts the chunks (RFC 3030 s2) and calls
    :meth:`finish` after the last.

    Both refuse, at the end of the message: a bare CR or LF anywhere
    (RFC 5321 s2.3.8; the SMTP smuggling class of CVE-2023-51764, where a
    bare LF before the dot would end the message for some receivers), a line
    longer than ``maxLine`` octets counting its CRLF (s4.5.3.1.6), and more
    than ``maxSize`` octets (RFC 1870).  After a problem the body is still
    read to its end, but nothing more goes to the sink.

    The work is done with ``bytes`` methods over whole buffers (find,
    count, split), never a line at a time in Python.

    The decoded body goes to ``sink(bytes)`` in pieces; it always starts at
    a line start and, for DATA, ends with the CRLF before the dot.

    @ivar error: None, or the :class:`Reply` to give at the end.
    @ivar size: decoded octets handed to the sink so far.
    @ivar done: the end of the body was seen (DATA) or :meth:`finish` called.
    """

    __slots__ = ("sink", "dotted", "maxLine", "maxSize", "error", "size", "done", "_carry")

    def __init__(self, sink, maxLine: int, maxSize: int, dotted: bool = True):
        self.sink = sink
        self.dotted = dotted
        self.maxLine = maxLine
        self.maxSize = maxSize
        self.error = None
        self.size = 0
        self.done = False
        # Before an error: received bytes not yet checked, starting at a line
        # start.  After an error (DATA): the last 4 bytes seen, so that an end
        # marker split between two buffers is still found.
        self._carry = b""

    def feed(self, data: bytes) -> bytes | None:
        """
        Take the next bytes of a DATA body or BDAT chunk.

        @return: for DATA, None while the end marker has not been seen, then
            the bytes after it (possibly ``b""``); for BDAT always None.
        """
        if self.error is not None:
            return self._skip(data)
        buf = self._carry + data if self._carry else data
        if self.dotted:
            # One pass finds both dot-stuffed lines and the end marker: every
            # "CRLF ." is one or the other.  The buffer starts at a line start.
            if buf[:1] == b".":
                if buf[1:3] == b"\r\n":
                    return self._end(buf, 0)
                stuffed, at = True, buf.find(b"\r\n.")
            else:
                at = buf.find(b"\r\n.")
                stuffed = at >= 0
            while at >= 0:
                if buf[at + 3:at + 5] == b"\r\n":
                    return self._end(buf, at + 2)
                if at + 5 > len(buf):
                    break  # "CRLF ." or "CRLF .CR" at the very end: wait for more
                at = buf.find(b"\r\n.", at + 3)
            cut = buf.rfind(b"\r\n") + 2
            if cut == 1:
                cut = 0
        else:
            stuffed = False
            cut = buf.rfind(b"\n") + 1
        self._carry = buf[cut:]
        if cut:
            self._emit(buf[:cut] if cut < len(buf) else buf, stuffed)
        if self.error is None and len(self._carry) > self.maxLine:
            # the open line is too long already (RFC 5321 s4.5.3.1.6)
            self._fail(replies.DATA_LONG_LINE)
        if self.error is not None:
            self._carry = buf[-4:] if len(buf) >= 4 else (b"\r\n" + buf)[-4:]
        return None

    def _end(self, buf, end):
        """The end marker's line starts at ``end``."""
        self.done = True
        self._carry = b""
        if end:
            self._emit(buf[:end], True)
        return buf[end + 3:]

    def _fail(self, reply):
        if self.error is None:
            self.error = reply

    def _emit(self, lines: bytes, stuffed: bool):
        """``lines``: complete lines (ending in LF), starting at a line start."""
        parts = lines.split(b"\r\n")
        crlf = len(parts) - 1
        if lines.count(b"\n") != crlf or lines.count(b"\r") != crlf:
            # RFC 5321 s2.3.8: CR and LF only together, as CRLF
            self._fail(replies.DATA_BARE_LINE_END)
            return
        if len(lines) > self.maxLine - 2 and max(map(len, parts)) > self.maxLine - 2:
            self._fail(replies.DATA_LONG_LINE)
            return
        if stuffed:
            # RFC 5321 s4.5.2: the first dot of a line is removed
            if lines[:1] == b".":
                lines = lines[1:]
            lines = lines.replace(b"\r\n.", b"\r\n")
        self.size += len(lines)
        if self.size > self.maxSize:
            self._fail(replies.MESSAGE_TOO_BIG)
            return
        self.sink(lines)

    def _skip(self, data: bytes) -> bytes | None:
        """After an error: look only for the end marker (DATA)."""
        if not self.dotted:
            return None
        buf = self._carry + data
        end = buf.find(b"\r\n.\r\n")
        if end >= 0:
            self.done = True
            self._carry = b""
            return buf[end + 5:]
        self._carry = buf[-4:]
        return None

    def finish(self):
        """BDAT LAST: check and hand out the final, possibly unterminated, line."""
        self.done = True
        tail, self._carry = self._carry, b""
        if not tail or self.error is not None:
            return
        if b"\r" in tail or b"\n" in tail:
            self._fail(replies.DATA_BARE_LINE_END)
        elif len(tail) > self.maxLine - 2:
            self._fail(replies.DATA_LONG_LINE)
        else:
            self.size += len(tail)
            if self.size > self.maxSize:
                self._fail(replies.MESSAGE_TOO_BIG)
            else:
                self.sink(tail)
