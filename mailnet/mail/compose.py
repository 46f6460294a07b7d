"""
A MIME builder: a message (RFC 5322 + MIME, RFC 2045-2049) from its header
fields and a tree of parts, as canonical bytes (CRLF, no line over 998
octets, RFC 5322 s2.1.1).  Pure: no I/O.  The opposite of
:mod:`mailnet.mail.mime` (which reads what this writes; the tests round-trip
through it).

Used by JMAP Email/set create (RFC 8621 s4.6, mailnet/jmap/emailcreate.py);
anything that writes a message (the webmail, a report) can use it.

* Header fields: :func:`unstructured` (encoded-words, RFC 2047, for
  non-ASCII text, folding at white space otherwise),
  :func:`addressList` (display names quoted or encoded by
  ``email.utils.formataddr``), :func:`messageIdList`, :func:`date`
  (``email.utils.formatdate``), :func:`newMessageId`.
* Parts: a :class:`Part` is a leaf (``content`` bytes) or a multipart
  (``subParts``); :func:`build` picks each leaf's Content-Transfer-Encoding
  from its bytes (:func:`chooseEncoding`): ``7bit`` when the text is ASCII in
  short lines, ``quoted-printable`` for mostly-ASCII text, ``base64``
  otherwise; ``message/rfc822`` is never encoded (RFC 2046 s5.2.1), only
  ``7bit``/``8bit``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.charset
import email.header
import email.utils
import re
import secrets

MAX_LINE = 998  # RFC 5322 s2.1.1, without the CRLF
FOLD_AT = 78  # RFC 5322 s2.1.1 SHOULD
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 2045 s5.1 token
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,76}\Z")  # RFC 5322 s3.6.8
_UTF8 = email.charset.Charset("utf-8")
_UTF8.header_encoding = email.charset.QP  # readable encoded-words (=?utf-8?q?...?=)


class ComposeError(ValueError):
    """A value that cannot go into a message (a header with a control character...)."""


@dataclasses.dataclass
class Part:
    """
    One MIME part to build.

    @ivar type: ``maintype/subtype`` (lower case).
    @ivar content: the decoded content of a leaf (bytes); None for a multipart.
    @ivar subParts: the children of a ``multipart/*``.
    @ivar charset: for ``text/*``: the charset of ``content`` (``utf-8``).
    @ivar name: the file name (``filename`` and ``name`` parameters, RFC 2231
        encoded when not ASCII).
    @ivar disposition: ``inline``, ``attachment`` or None.
    @ivar cid: Content-ID without angle brackets.
    @ivar language: Content-Language tags; ``location``: Content-Location.
    @ivar headers: further ``(name, value)`` fields, values already in
        their final form (or plain text, encoded with :func:`unstructured`).
    """

    type: str = "text/plain"
    content: bytes | None = None
    subParts: list | None = None
    charset: str | None = None
    name: str | None = None
    disposition: str | None = None
    cid: str | None = None
    language: list | None = None
    location: str | None = None
    headers: list = dataclasses.field(default_factory=list)


# Header field values


def _check(value: str):
    if _CTL.search(value):
        raise ComposeError("a header value may not hold control characters or line breaks")


def checkFieldName(name: str) -> str:
    if not _FIELD_NAME.match(name):
        raise ComposeError(f"not a header field name: {name[:80]!r}")
    return name


def fold(name: str, value: str) -> str:
    """``Name: value`` folded at white space before FOLD_AT where possible (RFC 5322 s2.2.3), CRLF-joined."""
    words = value.split(" ")
    lines, line = [], name + ":"
    for word in words:
        if len(line) + 1 + len(word) > FOLD_AT and line.strip() and line != name + ":":
            lines.append(line)
            line = " " + word
        else:
            line += " " + word
    lines.append(line)
    return "\r\n".join(lines)


def unstructured(name: str, text: str) -> str:
    """
    An unstructured field (Subject, Comments, X-...): ``Name: text``, folded;
    encoded-words (RFC 2047 s5(1), UTF-8, Q or B) when the text is not
    ASCII or a word would make a line longer than 998.
    """
    checkFieldName(name)
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    _check(text)
    if text.isascii() and "=?" not in text and all(len(w) < MAX_LINE - len(name) - 2 for w in text.split(" ")):
        return fold(name, text)
    header = email.header.Header(text, _UTF8, header_name=name)
    return name + ": " + header.encode(linesep="\r\n", maxlinelen=FOLD_AT)


def address(name: str | None, addr: str) -> str:
    """One mailbox (RFC 5322 s3.4): ``addr`` or ``"Name" <addr>``, the name encoded when not ASCII."""
    _check(addr)
    if not addr or any(c in addr for c in " <>,;\"()[]\\") or addr.count("@") != 1:
        raise ComposeError(f"not an email address: {addr[:100]!r}")
    if not name:
        return addr
    _check(name)
    return email.utils.formataddr((name, addr), charset="utf-8")


def addressList(name: str, pairs) -> str:
    """``Name: a, b, c`` of ``(display name, address)`` pairs, folded between addresses."""
    checkFieldName(name)
    items = [address(n, a) for n, a in pairs]
    return _foldItems(name, items, ", ")


def _foldItems(name, items, separator):
    lines, line = [], name + ":"
    for n, item in enumerate(items):
        piece = item + (separator.rstrip() if n < len(items) - 1 else "")
        if len(line) + 1 + len(piece) > FOLD_AT and line != name + ":":
            lines.append(line)
            line = " " + piece
        else:
            line += " " + piece
    lines.append(line)
    return "\r\n".join(lines)


def messageIdList(name: str, ids) -> str:
    """``Name: <a@b> <c@d>`` (RFC 5322 s3.6.4; ids without brackets)."""
    checkFieldName(name)
    items = []
    for i in ids:
        _check(i)
        if not i or " " in i or "<" in i or ">" in i or "@" not in i:
            raise ComposeError(f"not a message id: {i[:100]!r}")
        items.append(f"<{i}>")
    return _foldItems(name, items, " ")


def date(name: str, seconds: float, offset: int = 0) -> str:
    """RFC 5322 s3.3 date-time of ``seconds`` as seen ``offset`` minutes east of UTC (``+0000`` for 0)."""
    # formatdate writes UTC as "-0000", which RFC 5322 s3.3 reserves for "zone unknown".
    text = email.utils.formatdate(seconds + offset * 60, localtime=False, usegmt=False)[:-5]
    sign = "-" if offset < 0 else "+"
    return f"{checkFieldName(name)}: {text}{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


def newMessageId(hostname: str) -> str:
    """A fresh, unique msg-id (RFC 5322 s3.6.4), without angle brackets."""
    host = hostname if re.fullmatch(r"[A-Za-z0-9.-]{1,200}", hostname or "") else "localhost"
    return f"{secrets.token_hex(12)}@{host}"


# Bodies


_HIGH = bytes(range(0x80, 0x100))


def chooseEncoding(data: bytes, isText: bool) -> str:
    """
    The Content-Transfer-Encoding for ``data`` (RFC 2045 s6): ``7bit`` for
    ASCII text whose lines fit in 998 octets and whose line ends are CRLF
    (or LF, which :func:`build` turns into CRLF); ``quoted-printable`` for
    text that is mostly ASCII; ``base64`` for the rest and every non-text.
    """
    if not isText:
        return "base64"
    if b"\r" in data.replace(b"\r\n", b"") or b"\x00" in data:
        return "base64"  # bare CR or NUL: only base64 keeps them
    if data.isascii() and max(map(len, data.split(b"\n"))) <= MAX_LINE + 1:
        return "7bit"
    high = len(data) - len(data.translate(None, _HIGH))
    return "quoted-printable" if high * 4 < len(data) else "base64"


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def encodeQuotedPrintable(data: bytes) -> bytes:
    """RFC 2045 s6.7 of CRLF text: line ends kept as hard line breaks, soft breaks at 76, CRLF throughout."""
    # binascii writes soft breaks with the line end it saw first (LF when there is none).
    return _crlf(binascii.b2a_qp(data, quotetabs=False, istext=True, header=False))


def encodeBase64(data: bytes) -> bytes:
    """RFC 2045 s6.8: lines of 76 characters, CRLF between them (none after the last)."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")[:-2]


def _encodeContent(part: Part):
    """(encoding, body bytes) of a leaf."""
    data = part.content or b""
    if part.type == "message/rfc822":
        # RFC 2046 s5.2.1: only 7bit, 8bit or binary.  Lines over 998 cannot be
        # sent as 8bit; such a message is attached as application/octet-stream
        # by the caller (see emailcreate).
        data = _crlf(data)
        return ("7bit" if all(b < 0x80 for b in data) else "8bit"), data
    isText = part.type.startswith("text/")
    if isText:
        data = _crlf(data)  # RFC 2046 s4.1.1: text line breaks are CRLF, before any encoding
    encoding = chooseEncoding(data, isText)
    if encoding == "7bit":
        return encoding, data
    if encoding == "quoted-printable":
        return encoding, encodeQuotedPrintable(data)
    return encoding, encodeBase64(data)


def _param(key: str, value: str) -> str:
    """``key="value"``; RFC 2231 ``key*=utf-8''...`` when not ASCII."""
    _check(value)
    if value.isascii() and len(value) < 200:
        if _TOKEN.match(value):
            return f"{key}={value}"
        return f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{key}*={email.utils.encode_rfc2231(value, 'utf-8')}"


def _paramField(name, head, params):
    items = [head] + params
    return _foldItems(name, [i + ";" for i in items[:-1]] + items[-1:], " ")


def _partHeader(part: Part, boundary: str | None, encoding: str | None) -> list[str]:
    fields = []
    params = []
    if part.type.startswith("text/"):
        params.append(_param("charset", part.charset or "utf-8"))
    if part.name is not None and part.subParts is None:
        params.append(_param("name", part.name))
    if boundary is not None:
        params.append(f'boundary="{boundary}"')
    fields.append(_paramField("Content-Type", part.type, params))
    if encoding is not None and encoding != "7bit":
        fields.append(f"Content-Transfer-Encoding: {encoding}")
    if part.disposition is not None or (part.name is not None and part.subParts is None):
        params = [_param("filename", part.name)] if part.name is not None else []
        fields.append(_paramField("Content-Disposition", part.disposition or "attachment", params))
    if part.cid is not None:
        fields.append(messageIdList("Content-ID", [part.cid]))
    if part.language:
        fields.append(fold("Content-Language", ", ".join(part.language)))
    if part.location is not None:
        fields.append(unstructured("Content-Location", part.location))
    for name, value in part.headers:
        fields.append(value if value.lower().startswith(name.lower() + ":") else unstructured(name, value))
    return fields


def _boundary(parts_bytes) -> str:
    while True:
        boundary = "=_" + secrets.token_hex(12)
        if not any(boundary.encode() in b for b in parts_bytes):
            return boundary


def _render(part: Part) -> tuple[list[str], bytes]:
    """(header fields, body) of a part."""
    if part.subParts is not None:
        if not part.type.startswith("multipart/"):
            raise ComposeError("only a multipart part has subParts")
        rendered = [_joinPart(*_render(child)) for child in part.subParts]
        boundary = _boundary(rendered)
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + r + b"\r\n" for r in rendered)
        body += b"--" + boundary.encode() + b"--\r\n"
        return _partHeader(part, boundary, None), body
    if part.type.startswith("multipart/"):
        raise ComposeError("a multipart part needs subParts")
    encoding, body = _encodeContent(part)
    return _partHeader(part, None, encoding), body


def _joinPart(fields, body) -> bytes:
    return ("\r\n".join(fields) + "\r\n\r\n").encode("utf-8") + body


def build(fields: list[str], root: Part) -> bytes:
    """
    The message: the top-level ``fields`` (already formatted with the
    functions above, no CRLF at the end), MIME-Version, then ``root``'s
    own fields and body.

    @raise ComposeError: a value that cannot be written.
    """
    partFields, body = _render(root)
    header = list(fields) + ["MIME-Version: 1.0"] + partFields
    for field in header:
        for line in field.split("\r\n"):
            if len(line.encode("utf-8")) > MAX_LINE:
                raise ComposeError("a header line is longer than 998 octets")
    return _joinPart(header, body)


def stripFields(message: bytes, names) -> bytes:
    """The message without the header fields named (folded lines included): Bcc before sending."""
    end = message.find(b"\r\n\r\n")
    head, rest = (message, b"") if end < 0 else (message[:end + 2], message[end + 2:])
    wanted = {n.lower().encode("ascii") for n in names}
    out, skipping = [], False
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        skipping = line.partition(b":")[0].strip().lower() in wanted
        if not skipping:
            out.append(line)
    return b"".join(line + b"\r\n" for line in out) + rest


__all__ = ["Part", "ComposeError", "build", "unstructured", "addressList", "messageIdList", "date",
           "newMessageId", "chooseEncoding", "stripFields"]
