"""
The list fields of a message (what a message list shows: JMAP Email
``from``, ``to``, ``cc``, ``subject``, ``sentAt``, ``messageId``,
``hasAttachment``, ``preview``; RFC 8621 s4.1), from its bytes, without
I/O.  The store's list index (:mod:`mailnet.store.summaries`) keeps them.

* Header fields: the first of each field, unfolded (RFC 5322 s2.2.3),
  RFC 2047 encoded words decoded (:func:`mailnet.mail.headers.decodeWords`),
  raw 8-bit values read as UTF-8 (RFC 6532).  Addresses are ``(name,
  email)`` pairs (name None when there is none; group members flattened,
  RFC 5322 s3.4): simple forms by one regex, the others through
  :func:`mailnet.mail.headers.parseAddresses`.
* ``sentAt``: the Date field in UTC seconds (:func:`mailnet.mail.threading.dateSeconds`),
  None when it does not parse.
* ``preview`` (RFC 8621 s4.1.4: "up to 256 characters of the beginning of
  the message's text"): the first text/plain part that is not an
  attachment, transfer-decoded (base64, quoted-printable) and charset
  decoded; if there is none, the first text/html part stripped to its
  text.  White space runs become one space.
* ``hasAttachment``: a leaf part with ``Content-Disposition: attachment``,
  or one that is neither text nor multipart (images, application/*,
  message/rfc822...), except an inline part of a multipart/related (a
  picture inside an HTML body).  A text part with a file name and no
  ``inline`` disposition counts too.

The MIME structure is read by a light walk (:class:`_Walk`: one regex
for a header's fields, a literal search for boundaries), not by the email
package, which took four times as long.  The caller gives at most
:data:`READ_LIMIT` bytes (the beginning of a large message): parts that
start beyond it are not seen.  Nothing here raises on bad input: what
cannot be read is left empty; raw bytes that are not UTF-8 are replaced
(U+FFFD), never kept as surrogates.
"""

from __future__ import annotations

import binascii
import dataclasses
import html.parser
import re

from mailnet.mail.headers import decodeWords, headerFields, paramValue, parseAddresses, parseParams
from mailnet.mail.mime import _splitParts, decodeQuotedPrintable
from mailnet.mail.threading import dateSeconds, messageIds

# How much of a message the index reads (the header and the first parts).
READ_LIMIT = 256 * 1024
PREVIEW_LENGTH = 256  # RFC 8621 s4.1.4
# Caps on what one message may put into the index.
MAX_SUBJECT = 2000  # characters
MAX_ADDRESSES = 100  # per field
MAX_ADDRESS_TEXT = 500  # characters of a name or an address
# Transfer-encoded bytes of a part decoded for the preview (plenty for 256 characters).
_PREVIEW_RAW = 16 * 1024
_MAX_PARTS = 500
_MAX_DEPTH = 20

_WS = re.compile(r"\s+")
# C0 and C1 controls (and DEL) have no place in a preview or a subject.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """The list fields of one message (see the module docstring)."""

    subject: str = ""
    sender: tuple = ()  # From: ((name, email), ...)
    to: tuple = ()
    cc: tuple = ()
    sentAt: float | None = None
    messageId: str | None = None
    hasAttachment: bool = False
    preview: str = ""

    def toJson(self):
        """A JSON-ready dict (what the index stores)."""
        return {
            "subject": self.subject,
            "from": [list(a) for a in self.sender],
            "to": [list(a) for a in self.to],
            "cc": [list(a) for a in self.cc],
            "sentAt": self.sentAt,
            "messageId": self.messageId,
            "hasAttachment": self.hasAttachment,
            "preview": self.preview,
        }

    @classmethod
    def fromJson(cls, d):
        def addrs(v):
            return tuple((a[0], a[1]) for a in v or ())

        return cls(subject=d.get("subject") or "", sender=addrs(d.get("from")), to=addrs(d.get("to")),
                   cc=addrs(d.get("cc")), sentAt=d.get("sentAt"), messageId=d.get("messageId"),
                   hasAttachment=bool(d.get("hasAttachment")), preview=d.get("preview") or "")


def summarize(data: bytes) -> Summary:
    """The :class:`Summary` of a message (its first :data:`READ_LIMIT` bytes)."""
    data = bytes(data[:READ_LIMIT])
    header, body = _split(data)
    f = _fields(header)
    subject = _text(f.get(b"subject"))
    if len(subject) > MAX_SUBJECT:
        subject = subject[:MAX_SUBJECT]
    date = f.get(b"date")
    ids = messageIds(_str(f.get(b"message-id")))
    state = _Walk()
    try:
        state.entity(f, body, 0, None)
        preview = state.preview()
    except Exception:  # nothing here should raise; a bad message still gets its header fields
        preview = ""
    return Summary(
        subject=subject,
        sender=addresses(f.get(b"from")),
        to=addresses(f.get(b"to")),
        cc=addresses(f.get(b"cc")),
        sentAt=None if date is None else _seconds(_str(date)),
        messageId=ids[0] if ids else None,
        hasAttachment=state.attachment,
        preview=preview,
    )


# The fields we use, found by the one header scanner (mail.headers.headerFields).
_NAMES = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"content-type",
          b"content-transfer-encoding", b"content-disposition")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _split(data: bytes):
    """(header, body) of an entity; a header ends at the first empty line."""
    if data[:2] == b"\r\n":
        return b"", data[2:]
    if data[:1] == b"\n":
        return b"", data[1:]
    m = _HEADER_END.search(data)
    if m is None:
        return data, b""
    return data[:m.start() + 1], data[m.end():]


def _fields(header: bytes) -> dict:
    """The first value of each field we use (lower-cased name -> bytes), unfolded (RFC 5322 s2.2.3)."""
    out = headerFields(header, _NAMES)
    for key, value in out.items():
        if b"\n" in value:
            value = _FOLD.sub(b"", value)
        out[key] = value.strip(b" \t\r")
    return out


def _str(value) -> str:
    """Header bytes as text: UTF-8 (RFC 6532), anything else replaced (never surrogates)."""
    if value is None:
        return ""
    return value.decode("utf-8", "replace")


def _text(value) -> str:
    """An unstructured field (Subject) decoded: RFC 2047 words, controls out, trimmed."""
    text = _str(value)
    if "=?" in text:
        text = decodeWords(text)
    return _CONTROL.sub("", text).strip()


def _seconds(value):
    t = dateSeconds(value.strip())
    return None if t is None else float(t)


def addresses(value) -> tuple:
    """An address-list field (bytes) as ``((name, email), ...)``: names decoded (RFC 2047), groups flattened."""
    text = _str(value)
    if not text.strip():
        return ()
    simple = _simpleAddresses(text)
    if simple is not None:
        return simple
    out = []
    try:
        items = parseAddresses(text)
    except Exception:
        return ()
    for item in items:
        members = item[2] if item[0] == "group" else [item]
        for name, _adl, local, host in members:
            if len(out) >= MAX_ADDRESSES:
                return tuple(out)
            addr = local or ""
            if host:
                addr += "@" + host
            if name is not None and "=?" in name:
                name = decodeWords(name)
            if name is not None:
                name = _CONTROL.sub("", name).strip()[:MAX_ADDRESS_TEXT] or None
            addr = _CONTROL.sub("", addr)[:MAX_ADDRESS_TEXT]
            out.append((name, addr))
    return tuple(out)


# "a@b" or "Some Name <a@b>": most address fields, read without the full parser.
_SIMPLE = re.compile(r"\s*(?:([^<>@]*?)\s*<([^<>\s@]+@[^<>\s@]+)>|([^<>\s@]+@[^<>\s@]+))\s*")


def _simpleAddresses(text):
    """The addresses of a list of simple forms (no quotes, comments, groups, encoded words), else None."""
    if '"' in text or "(" in text or ":" in text or ";" in text or "=?" in text or "\\" in text:
        return None
    out = []
    for item in text.split(",")[:MAX_ADDRESSES]:
        m = _SIMPLE.fullmatch(item)
        if m is None:
            return None
        name, addr = (m.group(1), m.group(2)) if m.group(2) else (None, m.group(3))
        name = " ".join(name.split()) if name else None
        if (name and _CONTROL.search(name)) or _CONTROL.search(addr):
            return None
        out.append(((name or None) and name[:MAX_ADDRESS_TEXT], addr[:MAX_ADDRESS_TEXT]))
    return tuple(out)


def _params(value):
    """(lower-cased head, params) of a Content-Type or Content-Disposition value (bytes or None)."""
    if value is None:
        return None, []
    try:
        head, params = parseParams(_str(value))
    except Exception:
        return None, []
    return head.strip().lower() or None, params


class _Walk:
    """
    A light MIME walk (RFC 2046): boundaries found by a literal search
    (mail.mime's), each part's fields by one regex; what it finds is the
    first text/plain and text/html leaves and whether there is an
    attachment.
    """

    def __init__(self):
        self.plain = None  # (body, fields, params)
        self.html = None
        self.attachment = False
        self.parts = 0

    def entity(self, f, body, depth, parentType):
        self.parts += 1
        ctype, params = _params(f.get(b"content-type"))
        if ctype is None or "/" not in ctype:
            ctype = "message/rfc822" if parentType == "multipart/digest" else "text/plain"
        if ctype.startswith("multipart/"):
            boundary = paramValue(params, "boundary")
            if not boundary or depth >= _MAX_DEPTH:
                return
            pieces = _splitParts(body, boundary.encode("utf-8", "replace"))
            # preamble, then (close marker, part) pairs; after a close marker: the epilogue
            for i in range(2, len(pieces), 2):
                if pieces[i - 1] or self.parts >= _MAX_PARTS:
                    break
                part = pieces[i]
                header, partBody = _split(part[2:] if part[:2] == b"\r\n" else part[1:] if part[:1] == b"\n" else part)
                self.entity(_fields(header), partBody, depth + 1, ctype)
            return
        if depth and self._isAttachment(f, ctype, parentType):
            self.attachment = True
            return
        if ctype == "text/plain" and self.plain is None:
            self.plain = (body, f, params)
        elif ctype == "text/html" and self.html is None:
            self.html = (body, f, params)

    @staticmethod
    def _isAttachment(f, ctype, parentType):
        disposition, dparams = _params(f.get(b"content-disposition"))
        if disposition == "attachment":
            return True
        maintype = ctype.partition("/")[0]
        if maintype == "text":
            return paramValue(dparams, "filename") is not None and disposition != "inline"
        # A picture in an HTML body (multipart/related, inline): not an attachment.
        return not (parentType == "multipart/related" and disposition in (None, "inline"))

    def preview(self):
        if self.plain is not None:
            return previewOf(_decoded(*self.plain))
        if self.html is not None:
            return previewOf(htmlText(_decoded(*self.html, limit=_PREVIEW_RAW * 4)))
        return ""


def _decoded(body, f, params, limit=_PREVIEW_RAW) -> str:
    """The beginning of a leaf part's text: transfer- and charset-decoded."""
    cte = _str(f.get(b"content-transfer-encoding")).strip().lower()
    if cte == "base64":
        raw = re.sub(rb"[^A-Za-z0-9+/]", b"", body[:limit * 2])
        raw = raw[:len(raw) - len(raw) % 4]
        try:
            data = binascii.a2b_base64(raw)
        except (binascii.Error, ValueError):
            data = b""
    elif cte == "quoted-printable":
        data = decodeQuotedPrintable(body[:limit])
    else:
        data = body[:limit]
    charset = (paramValue(params, "charset") or "utf-8").strip().strip('"') or "utf-8"
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError, TypeError):
        return data.decode("utf-8", "replace")


def previewOf(text: str) -> str:
    """White space runs as one space, controls out, at most PREVIEW_LENGTH characters."""
    size = PREVIEW_LENGTH * 4
    while True:
        head = text[:size]
        if _CONTROL.search(head):
            head = _CONTROL.sub(" ", head)
        out = " ".join(head.split())
        if len(out) >= PREVIEW_LENGTH or size >= len(text) or size > PREVIEW_LENGTH * 256:
            return out[:PREVIEW_LENGTH].rstrip()
        size *= 4


class _Text(html.parser.HTMLParser):
    """The text of an HTML document (no script, style, head), stopping once there is enough."""

    SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})
    BREAK = frozenset({"br", "p", "div", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6",
                       "blockquote", "pre", "hr", "table"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.length = 0
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BREAK:
            self.out.append(" ")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BREAK:
            self.out.append(" ")

    def handle_data(self, data):
        if not self.skipping:
            self.out.append(data)
            self.length += len(data.strip())


def htmlText(markup: str) -> str:
    """The text of an HTML body (entities decoded), enough of it for a preview."""
    parser = _Text()
    try:
        for i in range(0, len(markup), 2048):
            parser.feed(markup[i:i + 2048])
            if parser.length > PREVIEW_LENGTH * 2:
                break
        else:
            parser.close()
    except Exception:
        pass
    return "".join(parser.out)
