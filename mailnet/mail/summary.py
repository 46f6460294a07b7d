"""
The list fields of a message (what a message list shows: JMAP Email
``from``, ``to``, ``cc``, ``subject``, ``sentAt``, ``messageId``,
``hasAttachment``, ``preview``; RFC 8621 s4.1), from its bytes, without
I/O.  The store's list index (:mod:`mailnet.store.summaries`) keeps them.

* Header fields: the first of each field, unfolded (RFC 5322 s2.2.3),
  RFC 2047 encoded words decoded (:func:`mailnet.mail.headers.decodeWords`),
  raw 8-bit values read as UTF-8 (RFC 6532).  Addresses are ``(name,
  email)`` pairs (name None when there is none; group members flattened,
  RFC 5322 s3.4), through :func:`mailnet.mail.headers.parseAddresses`.
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

The caller gives at most :data:`READ_LIMIT` bytes (the beginning of a
large message): parts that start beyond it are not seen.  Nothing here
raises on bad input: what cannot be read is left empty.
"""

from __future__ import annotations

import binascii
import dataclasses
import email
import email.policy
import html.parser
import re

from mailnet.mail.headers import decodeWords, headerString, paramValue, parseAddresses, parseParams
from mailnet.mail.mime import decodeQuotedPrintable
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
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
    except Exception:  # the email package is lenient; be safe anyway
        return Summary()
    subject = _text(msg.get("Subject"))
    if len(subject) > MAX_SUBJECT:
        subject = subject[:MAX_SUBJECT]
    date = msg.get("Date")
    ids = messageIds(_raw(msg.get("Message-ID")))
    try:
        preview, attachment = _body(msg)
    except Exception:
        preview, attachment = "", False
    return Summary(
        subject=subject,
        sender=addresses(msg.get("From")),
        to=addresses(msg.get("To")),
        cc=addresses(msg.get("Cc")),
        sentAt=None if date is None else _seconds(_raw(date)),
        messageId=ids[0] if ids else None,
        hasAttachment=attachment,
        preview=preview,
    )


def _raw(value) -> str:
    """A compat32 header value as text (8-bit bytes as UTF-8), unfolded."""
    if value is None:
        return ""
    try:
        text = headerString(value)
    except Exception:
        text = str(value)
    return re.sub(r"\r?\n(?=[ \t])", "", text)


def _text(value) -> str:
    """An unstructured field (Subject) decoded: RFC 2047 words, controls out, trimmed."""
    text = _raw(value)
    if "=?" in text:
        text = decodeWords(text)
    return _CONTROL.sub("", text).strip()


def _seconds(value):
    t = dateSeconds(value.strip())
    return None if t is None else float(t)


def addresses(value) -> tuple:
    """An address-list field as ``((name, email), ...)``: names decoded (RFC 2047), groups flattened."""
    text = _raw(value)
    if not text.strip():
        return ()
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


def _disposition(part):
    value = part.get("Content-Disposition")
    if value is None:
        return None, None
    try:
        head, params = parseParams(_raw(value))
        filename = paramValue(params, "filename")
    except Exception:
        return None, None
    return head.strip().lower() or None, filename


def _isAttachment(part, parentType):
    disposition, filename = _disposition(part)
    if disposition == "attachment":
        return True
    maintype = part.get_content_maintype()
    if maintype == "text":
        return filename is not None and disposition != "inline"
    if maintype == "multipart":
        return False
    # A picture in an HTML body (multipart/related, inline): not an attachment.
    return not (parentType == "multipart/related" and disposition in (None, "inline"))


def _body(msg):
    """(preview, hasAttachment) by a walk over the parts."""
    plain = htmlPart = None
    attachment = False
    stack = [(msg, None)]
    seen = 0
    while stack and seen < _MAX_PARTS:
        part, parentType = stack.pop()
        seen += 1
        if part.is_multipart():
            ctype = part.get_content_type()
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, ctype) for c in reversed(children))
            continue
        if part is not msg and _isAttachment(part, parentType):
            attachment = True
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and plain is None:
            plain = part
        elif ctype == "text/html" and htmlPart is None:
            htmlPart = part
    if plain is not None:
        text = _decoded(plain)
    elif htmlPart is not None:
        text = htmlText(_decoded(htmlPart, _PREVIEW_RAW * 4))
    else:
        text = ""
    return previewOf(text), attachment


def _decoded(part, limit=_PREVIEW_RAW) -> str:
    """The beginning of a leaf part's text: transfer- and charset-decoded."""
    raw = part.get_payload(decode=False)
    if isinstance(raw, list):
        return ""
    cte = str(part.get("Content-Transfer-Encoding", "") or "").strip().lower()
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:
            # compat32 hands some 8-bit payloads over decoded already; this gives their bytes.
            raw, cte = part.get_payload(decode=True) or b"", "8bit"
    if cte == "base64":
        raw = re.sub(rb"[^A-Za-z0-9+/]", b"", raw[:limit * 2])
        raw = raw[:len(raw) - len(raw) % 4]
        try:
            data = binascii.a2b_base64(raw)
        except (binascii.Error, ValueError):
            data = b""
    elif cte == "quoted-printable":
        data = decodeQuotedPrintable(raw[:limit])
    else:
        data = raw[:limit]
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")


def previewOf(text: str) -> str:
    """White space runs as one space, controls out, at most PREVIEW_LENGTH characters."""
    text = _CONTROL.sub(" ", text[:PREVIEW_LENGTH * 8])
    return _WS.sub(" ", text).strip()[:PREVIEW_LENGTH]


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
