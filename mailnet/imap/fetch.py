"""
Message structure as FETCH shows it: ENVELOPE and BODYSTRUCTURE
(RFC 3501 s7.4.2), section resolution (RFC 3501 s6.4.5), the part BINARY
decodes (RFC 3516), and a cache of scanned structures.

The MIME scan itself (:func:`~mailnet.mail.mime.scan`, offsets of every
part, so sections are served by seeking in the stored file) and the
content-transfer decoders live in :mod:`mailnet.mail.mime`; address lists
are parsed by :mod:`mailnet.mail.headers`.
"""

from __future__ import annotations

import base64
import collections
import re

from mailnet.imap.serialize import nstring, plist, string
from mailnet.mail.headers import headerString, parseAddresses, parseParams
from mailnet.mail.mime import MAX_DEPTH, MAX_PARTS, Part, decoder, scan, scanHeader

# What a scan may do on the reactor thread (session.py): past this many
# parts, lines read one by one (about 1 microsecond each), bytes of header
# fields (all parts together: the email package parses them, about 0.5 ms
# per KB), or bytes counted in bulk, scan() raises OverBudget and the
# caller does the work in a worker thread instead.
INLINE_BUDGET = (64, 8192, 32 * 1024, 8 * 1024 * 1024)

def build(f, size, full, maxParts=MAX_PARTS, maxDepth=MAX_DEPTH, budget=None, render=False):
    """
    A :class:`Structure` of the message in ``f`` (positioned at 0): the
    whole MIME tree when ``full``, else the top-level header only.  With
    ``render`` (work done in a worker thread), ENVELOPE, and for a full
    scan BODY and BODYSTRUCTURE, are made at once, so that nothing of
    the size of the tree is left to do on the reactor thread.
    """
    if full:
        root = scan(f, size, maxParts, maxDepth, budget)
    else:
        root = scanHeader(f, size, budget)
    entry = Structure(root, full)
    if render:
        entry.envelope()
        if full:
            entry.body()
            entry.bodystructure()
    return entry


# ENVELOPE


def _headerValue(part, name):
    """The raw, unfolded value of the first ``name`` header, as bytes, or None."""
    msg = part.parsed()
    value = msg.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        value = headerString(value)  # raw 8-bit (RFC 6532 UTF-8) kept byte for byte
    value = re.sub(r"\r?\n(?=[ \t])", "", value).strip()
    return value.encode("utf-8", "surrogateescape")


def _bstr(value):
    return None if value is None else value.encode("utf-8", "surrogateescape")


def _addressList(part, name, ascii=False):
    raw = _headerValue(part, name)
    if raw is None:
        return None
    items = parseAddresses(raw.decode("utf-8", "surrogateescape"))
    s = _downgrade if ascii else _bstr
    out = []
    for item in items:
        if item[0] == "group" and len(item) == 3:
            out.append(plist([b"NIL", b"NIL", nstring(s(item[1])), b"NIL"]))
            for address in item[2]:
                out.append(_address(address, ascii))
            out.append(b"(NIL NIL NIL NIL)")
        else:
            out.append(_address(item, ascii))
    if not out:
        return None
    return b"(" + b"".join(out) + b")"


def _address(address, ascii):
    name_, adl, local, host = address
    if not ascii:
        return plist([nstring(_bstr(name_)), nstring(_bstr(adl)), nstring(_bstr(local)), nstring(_bstr(host))])
    if local is not None and not local.isascii():
        # RFC 6858 s3: an address a legacy client cannot take becomes an
        # empty group named by the encoded original.
        whole = "%s@%s" % (local, host) if host else local
        if name_:
            whole = "%s <%s>" % (name_, whole)
        return plist([b"NIL", b"NIL", nstring(_encodedWords(whole)), b"NIL"]) + b"(NIL NIL NIL NIL)"
    if host is not None and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # the same domain, in A-labels
        except UnicodeError:
            whole = "%s@%s" % (local, host)
            return plist([b"NIL", b"NIL", nstring(_encodedWords(whole)), b"NIL"]) + b"(NIL NIL NIL NIL)"
    return plist([nstring(_downgrade(name_)), nstring(_bstr(adl)), nstring(_bstr(local)), nstring(_bstr(host))])


def _encodedWords(text: str) -> bytes:
    """``text`` as RFC 2047 encoded words (UTF-8, base64; each under 76 characters)."""
    data = text.encode("utf-8", "surrogateescape")
    words = []
    start = 0
    while start < len(data):
        end = min(len(data), start + 45)
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1  # not inside a UTF-8 sequence
        words.append(b"=?utf-8?b?" + base64.b64encode(data[start:end]) + b"?=")
        start = end
    return b" ".join(words)


def _downgrade(value):
    """An ENVELOPE string for a client without UTF8=ACCEPT: 8-bit text as RFC 2047 encoded words."""
    if value is None:
        return None
    if isinstance(value, bytes):
        if value.isascii():
            return value
        value = value.decode("utf-8", "surrogateescape")
    elif value.isascii():
        return value.encode("ascii")
    return _encodedWords(value)


def _same(value):
    return value


def envelope(part: Part, utf8=True) -> bytes:
    """
    ENVELOPE of a message Part (RFC 3501 s7.4.2).  Without ``utf8`` (a
    session that enabled neither UTF8=ACCEPT nor IMAP4rev2), 8-bit header
    text is downgraded (RFC 6855 s5, RFC 6858 s3): encoded words, IDN
    domains in A-labels, an address with an 8-bit local part an empty group
    named by the encoded address.
    """
    ascii = not utf8 and not (part.header or b"").isascii()
    s = _downgrade if ascii else _same
    frm = _addressList(part, "From", ascii)
    sender = _addressList(part, "Sender", ascii) or frm
    replyTo = _addressList(part, "Reply-To", ascii) or frm
    items = [
        nstring(s(_headerValue(part, "Date"))),
        nstring(s(_headerValue(part, "Subject"))),
        frm or b"NIL",
        sender or b"NIL",
        replyTo or b"NIL",
        _addressList(part, "To", ascii) or b"NIL",
        _addressList(part, "Cc", ascii) or b"NIL",
        _addressList(part, "Bcc", ascii) or b"NIL",
        nstring(s(_headerValue(part, "In-Reply-To"))),
        nstring(s(_headerValue(part, "Message-ID"))),
    ]
    return plist(items)


# BODYSTRUCTURE


def _paramList(params):
    if not params:
        return b"NIL"
    out = []
    for k, v in params:
        out.append(string(k.encode("utf-8", "surrogateescape")))
        out.append(string(str(v).encode("utf-8", "surrogateescape")))
    return plist(out)


def _disposition(part):
    # RFC 2183 / RFC 3501 s7.4.2 body-fld-dsp: the type and its parameters,
    # unfolded, RFC 2231 parameters as the message has them (parseParams).
    value = part.get("Content-Disposition")
    if value is None:
        return b"NIL"
    kind, params = parseParams(value)
    if not kind:
        return b"NIL"
    return plist([string(kind.encode("utf-8", "surrogateescape")), _paramList(params)])


def _language(part):
    value = _headerValue(part, "Content-Language")
    if value is None:
        return b"NIL"
    langs = [v.strip() for v in value.split(b",") if v.strip()]
    if not langs:
        return b"NIL"
    if len(langs) == 1:
        return string(langs[0])
    return plist([string(x) for x in langs])


def bodystructure(part: Part, extensible=True) -> bytes:
    """BODYSTRUCTURE (``extensible``) or BODY of a Part tree."""
    if part.children is not None:
        out = b"".join(bodystructure(c, extensible) for c in part.children)
        out += b" " + string(part.subtype.encode())
        if extensible:
            out += b" " + b" ".join([_paramList(part.params), _disposition(part), _language(part),
                                    nstring(_headerValue(part, "Content-Location"))])
        return b"(" + out + b")"
    fields = [
        string(part.maintype.encode()),
        string(part.subtype.encode()),
        _paramList(part.params),
        nstring(_headerValue(part, "Content-ID")),
        nstring(_headerValue(part, "Content-Description")),
        string(part.encoding.encode("utf-8", "replace")),
        b"%d" % part.size,
    ]
    if part.message is not None:
        fields.append(envelope(part.message))
        fields.append(bodystructure(part.message, extensible))
        fields.append(b"%d" % part.lines)
    elif part.maintype == "text":
        fields.append(b"%d" % part.lines)
    if extensible:
        fields += [nstring(_headerValue(part, "Content-MD5")), _disposition(part), _language(part),
                   nstring(_headerValue(part, "Content-Location"))]
    return plist(fields)


# Sections


class SectionError(Exception):
    """The section does not exist in this message (answered as NIL / empty)."""


def locate(root: Part, numbers):
    """
    The Part named by part numbers (RFC 3501 s6.4.5), and whether it is
    "a message" (the root or an encapsulated message) rather than a body
    part.  Raises SectionError.
    """
    cur = root
    isMessage = True
    for n in numbers:
        if not isMessage and cur.message is not None:
            cur = cur.message
            isMessage = True
        if cur.children is not None:
            if not 1 <= n <= len(cur.children):
                raise SectionError("no part %d" % n)
            cur = cur.children[n - 1]
            isMessage = False
        elif isMessage and n == 1:
            isMessage = False
        else:
            raise SectionError("no part %d" % n)
    return cur, isMessage


def filterHeader(header: bytes, fields, keep: bool) -> bytes:
    """HEADER.FIELDS (keep) / HEADER.FIELDS.NOT: the chosen fields, then the blank line."""
    wanted = {f.lower() for f in fields}
    out = []
    current = None
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and current is not None:
            if current:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        current = (name in wanted) == keep
        if current:
            out.append(line)
    out.append(b"\r\n")
    return b"".join(out)


def resolve(root: Part, section):
    """
    What a BODY[section] returns: ``("range", start, end)`` of the stored
    message, or ``("bytes", data)`` for computed sections.  Raises
    SectionError for sections that do not exist.
    """
    if section is None:
        return ("range", 0, root.end)
    text = section.text
    if not section.part:
        if text is None:
            return ("range", 0, root.end)
        target = root
    else:
        node, isMessage = locate(root, section.part)
        if text is None:
            return ("range", node.bodyStart, node.end)
        if text == "MIME":
            return ("bytes", node.header if node.header else b"\r\n")
        if node.message is None:
            raise SectionError("not a message/rfc822 part")
        target = node.message
    if text == "HEADER":
        return ("range", target.headerStart, target.bodyStart)
    if text == "TEXT":
        return ("range", target.bodyStart, target.end)
    return ("bytes", filterHeader(target.header, section.fields, text == "HEADER.FIELDS"))


# BINARY (RFC 3516): content-transfer decoding, streamed.


def binarySource(root: Part, section):
    """
    For BINARY[section]: ``(start, end, encoding)`` of the part's encoded
    body.  The whole message (empty section) is not decoded.
    """
    if not section.part:
        return 0, root.end, "binary"
    node, isMessage = locate(root, section.part)
    if node.children is not None or isMessage:
        return node.bodyStart, node.end, "binary"
    enc = node.encoding
    decoder(enc)  # raises UnknownEncoding
    return node.bodyStart, node.end, enc


# Cache of scanned structures.


class StructureCache:
    """
    LRU of scanned Part trees (and small computed values), keyed by (user,
    folder, uidvalidity, uid, ...).  Bounded by the bytes of header text it
    holds as well as by entries.
    """

    def __init__(self, size=2000, maxBytes=32 * 1024 * 1024):
        self.size = size
        self.maxBytes = maxBytes
        self.bytes = 0
        self._items = collections.OrderedDict()  # key -> (entry, weight)

    def get(self, key):
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key, entry):
        weight = _weight(entry)
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._items[key] = (entry, weight)
        self.bytes += weight
        while self._items and (len(self._items) > self.size or self.bytes > self.maxBytes):
            _, (_, w) = self._items.popitem(last=False)
            self.bytes -= w

    def __len__(self):
        return len(self._items)


def _weight(entry):
    if not isinstance(entry, Structure):
        return 64
    total = 256
    todo = [entry.root]
    while todo:
        part = todo.pop()
        total += len(part.header) + 200
        if part.children:
            todo.extend(part.children)
        if part.message is not None:
            todo.append(part.message)
    return total


class Structure:
    """A scanned message with lazily built ENVELOPE / BODY / BODYSTRUCTURE bytes."""

    __slots__ = ("root", "full", "_envelope", "_envelopeAscii", "_body", "_bodystructure")

    def __init__(self, root, full=True):
        self.root = root
        self.full = full
        self._envelope = None
        self._envelopeAscii = None
        self._body = None
        self._bodystructure = None

    def envelope(self, utf8=True):
        if not utf8:
            # RFC 6855 s5: downgraded for a session without UTF8=ACCEPT (the
            # same bytes when the header is ASCII).
            if self._envelopeAscii is None:
                self._envelopeAscii = envelope(self.root, utf8=False)
            return self._envelopeAscii
        if self._envelope is None:
            self._envelope = envelope(self.root)
        return self._envelope

    def body(self):
        if self._body is None:
            self._body = bodystructure(self.root, extensible=False)
        return self._body

    def bodystructure(self):
        if self._bodystructure is None:
            self._bodystructure = bodystructure(self.root, extensible=True)
        return self._bodystructure
