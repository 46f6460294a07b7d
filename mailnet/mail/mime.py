"""
MIME structure and content, without I/O beyond the file object given.

* :func:`scan` / :func:`scanHeader`: a streaming, one-pass MIME scan into a
  :class:`Part` tree that records the byte offsets of every part (so a part
  is served by seeking in the stored file, never by loading it), with caps
  on parts and depth and a work budget (:class:`OverBudget`).  Header
  fields are parsed with the stdlib ``email`` package (compat32, so values
  stay byte-exact); bodies are only scanned line by line.  The stdlib
  parser is not used for the structure because it loads and copies every
  part (IMAP FETCH of a large message would cost its size in memory).
* :func:`decoder` / :func:`decodedChunks`: content-transfer decoding
  (base64, quoted-printable), streamed.
* :func:`quickText` / :func:`mimeText`: the decoded text of a message's
  text parts (what IMAP SEARCH BODY/TEXT matches): a light regex walk, and
  the ``email`` package for what the walk does not handle.

Tests: tests/mail/test_mime.py (with Hypothesis), tests/imap/test_mime_caps.py
and tests/imap/test_hostile_mime.py (the caps, through the server).
"""

from __future__ import annotations

import binascii
import email
import email.parser
import email.policy
import re

from mailnet.mail.headers import paramValue, parseParams
from mailnet.mail.lines import toCRLF

# Keep at most this much of any one header block in memory.
MAX_HEADER = 256 * 1024
_CHUNK = 64 * 1024

# RFC 2046 sets no limit on the number of parts or on nesting; a message
# built to have 100,000 parts costs seconds of CPU to scan.  Like Dovecot
# (lib-mail/message-parser.h: 10,000 parts, 100 levels) we stop reading
# MIME structure beyond these caps ([limits] mime_parts, mime_depth):
# the part that reaches the part cap is the last one, and the rest of the
# message is its body; a multipart or message/rfc822 part at the deepest
# level is one opaque application/octet-stream part.
MAX_PARTS = 10000
MAX_DEPTH = 100
# The scan and BODYSTRUCTURE recurse once or twice per level: a configured
# depth above this is taken as this (Python's recursion limit is 1,000).
DEPTH_CEILING = 300

_headerParser = email.parser.BytesHeaderParser(policy=email.policy.compat32)


class Part:
    """
    One MIME entity.  Offsets are into the whole stored message.

    @ivar headerStart: first byte of the MIME header (or message header).
    @ivar bodyStart: first byte after the blank line ending the header.
    @ivar end: end of the body (the CRLF before a boundary belongs to the
        boundary, RFC 2046 s5.1.1).
    @ivar header: the raw header bytes (at most MAX_HEADER).
    @ivar lines: lines in the body.
    @ivar children: list of Parts for multipart, else None.
    @ivar message: the encapsulated message (a Part) for message/rfc822.
    """

    __slots__ = ("headerStart", "bodyStart", "end", "header", "lines", "children", "message",
                 "maintype", "subtype", "params", "_parsed", "_binarySize")

    def __init__(self, headerStart):
        self.headerStart = headerStart
        self.bodyStart = headerStart
        self.end = headerStart
        self.header = b""
        self.lines = 0
        self.children = None
        self.message = None
        self.maintype = "text"
        self.subtype = "plain"
        self.params = []
        self._parsed = None
        self._binarySize = None

    @property
    def size(self):
        return self.end - self.bodyStart

    def parsed(self):
        """The header as an ``email.message.Message`` (compat32)."""
        if self._parsed is None:
            self._parsed = _headerParser.parsebytes(self.header)
        return self._parsed

    def get(self, name):
        value = self.parsed().get(name)
        if value is None:
            return None
        return str(value)

    @property
    def encoding(self):
        cte = self.get("Content-Transfer-Encoding")
        return (cte or "7bit").strip().lower() or "7bit"


class _Lines:
    """
    Line reader over a binary file that knows its offset, can push back one
    line, and remembers the line-ending length of the last line consumed.
    """

    def __init__(self, f, budget=float("inf")):
        self.f = f
        self.offset = 0
        self.lastEnd = 0
        self._prevEnd = 0
        self._back = None
        self.budget = budget  # lines that may still be read

    def readline(self):
        if self._back is not None:
            line, self._back = self._back, None
        else:
            self.budget -= 1
            if self.budget < 0:
                raise OverBudget()
            line = self.f.readline()
        self.offset += len(line)
        self._prevEnd = self.lastEnd
        self.lastEnd = _lineEndLen(line)
        return line

    def unread(self, line):
        self._back = line
        self.offset -= len(line)
        self.lastEnd = self._prevEnd


def _boundaryMatch(line, boundaries):
    """Index in ``boundaries`` of the boundary this line is, or -1; and whether it closes."""
    if not line.startswith(b"--"):
        return -1, False
    text = line.rstrip(b"\r\n \t")
    for i in range(len(boundaries) - 1, -1, -1):
        b = boundaries[i]
        if text == b:
            return i, False
        if text == b + b"--":
            return i, True
    return -1, False


def _lineEndLen(line):
    if line.endswith(b"\r\n"):
        return 2
    if line.endswith(b"\n"):
        return 1
    return 0


class OverBudget(Exception):
    """The scan needs more work than its budget allows (do it in a worker thread)."""


class _Scan:
    """The caps and the work budget of one scan, and the parts counted so far."""

    __slots__ = ("maxParts", "maxDepth", "parts", "headerBytes", "budgetParts", "budgetBytes", "budgetHeader")

    def __init__(self, maxParts, maxDepth, budget):
        self.maxParts = max(1, maxParts)
        self.maxDepth = min(max(1, maxDepth), DEPTH_CEILING)
        self.parts = 0
        self.headerBytes = 0
        if budget is None:
            budget = (float("inf"),) * 4
        self.budgetParts, _, self.budgetHeader, self.budgetBytes = budget


def scan(f, size=None, maxParts=MAX_PARTS, maxDepth=MAX_DEPTH, budget=None) -> Part:
    """
    Scan a message (a binary file positioned at 0) into a :class:`Part`
    tree.  Reads the file once, line by line where boundaries matter and in
    large chunks otherwise.

    At most ``maxParts`` parts (the root counts) and ``maxDepth`` levels
    (the root is level 1) are made; see MAX_PARTS.  ``budget`` is (parts,
    lines, bytes of header fields, bytes): past any of them, OverBudget.
    """
    lines = _Lines(f, budget[1] if budget is not None else float("inf"))
    root = _entity(lines, [], ("text", "plain"), 0, _Scan(maxParts, maxDepth, budget))
    return root


def scanHeader(f, size, budget=None) -> Part:
    """Only the top-level header (enough for ENVELOPE, HEADER, TEXT): a Part whose body runs to ``size``."""
    lines = _Lines(f, budget[1] if budget is not None else float("inf"))
    part = Part(0)
    _readHeader(lines, part, [], budget[2] if budget is not None else float("inf"))
    _contentType(part, ("text", "plain"))
    part.end = max(size, part.bodyStart)
    return part


def _contentType(part, default):
    value = part.parsed().get("Content-Type")
    if value is None:
        part.maintype, part.subtype = default
        part.params = [("charset", "us-ascii")] if default[0] == "text" else []
        return
    # RFC 5322 s2.2.3: the value is unfolded before its parameters are read
    # (a boundary folded inside its quotes is one boundary); RFC 2231
    # parameters stay in their encoded form (headers.parseParams).
    head, params = parseParams(str(value))
    ctype = head.lower()
    if "/" not in ctype:
        part.maintype, part.subtype = default
    elif ctype.count("/") != 1:
        part.maintype, part.subtype = "text", "plain"  # as the email package falls back
    else:
        main, _, sub = ctype.partition("/")
        part.maintype, part.subtype = main.strip(), sub.strip()
    if part.maintype == "text" and not any(k.lower() == "charset" for k, _ in params):
        params.append(("charset", "us-ascii"))
    part.params = params


def _readHeader(lines, part, boundaries, limit=float("inf")):
    chunks = []
    kept = 0
    while True:
        line = lines.readline()
        if not line:
            break
        if boundaries and _boundaryMatch(line, boundaries)[0] >= 0:
            lines.unread(line)
            break
        if kept < MAX_HEADER:
            chunks.append(line)
            kept += len(line)
            if kept > limit:
                raise OverBudget()
        if line in (b"\r\n", b"\n"):
            break
    part.header = b"".join(chunks)
    part.bodyStart = lines.offset


def _entity(lines, boundaries, default, depth, ctx):
    ctx.parts += 1
    if ctx.parts > ctx.budgetParts or lines.offset > ctx.budgetBytes:
        raise OverBudget()
    part = Part(lines.offset)
    _readHeader(lines, part, boundaries, ctx.budgetHeader - ctx.headerBytes)
    ctx.headerBytes += len(part.header)
    _contentType(part, default)
    boundary = None
    if part.maintype == "multipart":
        b = paramValue(part.params, "boundary")
        if b:
            boundary = b"--" + b.encode("utf-8", "surrogateescape")
    message = (part.maintype, part.subtype) in (("message", "rfc822"), ("message", "global")) \
        and part.encoding in ("7bit", "8bit", "binary")
    container = (part.maintype == "multipart" and boundary) or message
    if ctx.parts >= ctx.maxParts:
        # The part cap (Dovecot's MESSAGE_PART_FLAG_OVERFLOW): this is the
        # last part, and the rest of the message is its body; no boundary
        # is recognised any more, so every enclosing part ends there too.
        if container or part.maintype == "multipart":
            _opaque(part)
        _leaf(lines, part, [], ctx)
        return part
    if depth + 1 >= ctx.maxDepth and (container or part.maintype == "multipart"):
        # The depth cap: a container at the deepest level is not opened;
        # its body runs to the next boundary of an enclosing multipart.
        _opaque(part)
        container = False
    if container and boundary:
        _multipart(lines, part, boundaries + [boundary], boundary, depth, ctx)
    elif container:
        part.message = _entity(lines, boundaries, ("text", "plain"), depth + 1, ctx)
        part.end = part.message.end
        part.lines = part.message.lines + part.message.header.count(b"\n")
    else:
        _leaf(lines, part, boundaries, ctx)
    return part


def _opaque(part):
    """Show a part we do not look into as what it is to us: a run of octets (RFC 2046 s4.5.1)."""
    part.maintype, part.subtype, part.params = "application", "octet-stream", []


def _leaf(lines, part, boundaries, ctx):
    if not boundaries:
        # Top level single part: count lines in big chunks.
        f = lines.f
        start = lines.offset
        count = total = 0
        last = b""
        back, lines._back = lines._back, None
        for chunk in ([back] if back else []):
            count += chunk.count(b"\n")
            total += len(chunk)
            last = chunk[-1:]
        limit = ctx.budgetBytes
        while True:
            if start + total > limit:
                raise OverBudget()
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            count += chunk.count(b"\n")
            total += len(chunk)
            last = chunk[-1:]
        if total and last != b"\n":
            count += 1
        lines.offset = start + total
        part.end = lines.offset
        part.lines = count
        return
    count = 0
    lastBlank = False
    while True:
        line = lines.readline()
        if not line:
            part.end = lines.offset
            break
        if line.startswith(b"--") and _boundaryMatch(line, boundaries)[0] >= 0:
            lines.unread(line)
            # RFC 2046 s5.1.1: the CRLF before a boundary belongs to it.
            part.end = lines.offset - lines.lastEnd
            if lastBlank:
                count -= 1
            break
        count += 1
        lastBlank = line in (b"\r\n", b"\n")
    part.end = max(part.end, part.bodyStart)
    part.lines = max(count, 0)


def _multipart(lines, part, boundaries, boundary, depth, ctx):
    mine = len(boundaries) - 1
    part.children = []
    childDefault = ("message", "rfc822") if part.subtype == "digest" else ("text", "plain")
    closed = False
    while True:
        line = lines.readline()
        if not line:
            part.end = lines.offset
            break
        which, closing = _boundaryMatch(line, boundaries)
        if which < 0 or closed and which == mine:
            continue  # preamble or epilogue
        if which != mine:
            # An enclosing boundary: this multipart ends here.
            lines.unread(line)
            part.end = lines.offset - lines.lastEnd
            break
        if closing:
            closed = True
            continue
        part.children.append(_entity(lines, boundaries, childDefault, depth + 1, ctx))
    part.end = max(part.end, part.bodyStart)
    if not part.children:
        # RFC 2046 wants at least one part; show an empty text part.
        empty = Part(part.bodyStart)
        empty.end = part.bodyStart
        empty.params = [("charset", "us-ascii")]
        part.children.append(empty)


# Content-transfer decoding (RFC 2045 s6), streamed.


class UnknownEncoding(Exception):
    """BINARY on a part whose Content-Transfer-Encoding we cannot decode."""


class _Base64:
    def __init__(self):
        self.rest = b""

    def feed(self, data):
        data = self.rest + re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        cut = len(data) - len(data) % 4
        self.rest = data[cut:]
        try:
            return binascii.a2b_base64(data[:cut]) if cut else b""
        except binascii.Error:
            return b""

    def finish(self):
        rest, self.rest = self.rest, b""
        if not rest:
            return b""
        try:
            return binascii.a2b_base64(rest + b"=" * (-len(rest) % 4))
        except binascii.Error:
            return b""


# RFC 2045 s6.7 rule 3: white space at the end of an encoded line was added
# in transport and is deleted when decoding, so "=" followed by blanks is a
# soft line break (binascii.a2b_qp keeps the blanks and the line break).
# (The look-behind starts a match only at the first blank of a run: linear.)
_TRAILING_BLANKS = re.compile(rb"(?<![ \t])[ \t]+(?=\r?\n)")


def decodeQuotedPrintable(data: bytes, final=True) -> bytes:
    """
    Quoted-printable (RFC 2045 s6.7) decoded, trailing white space of each
    line deleted first (rule 3).  ``final``: ``data`` ends the body, so
    blanks at its very end go too (Dovecot's qp-decoder does the same).
    Line breaks come out as they are in ``data``.
    """
    if b" \n" in data or b"\t\n" in data or b" \r\n" in data or b"\t\r\n" in data:
        data = _TRAILING_BLANKS.sub(b"", data)
    if final and data[-1:] in (b" ", b"\t"):
        data = data.rstrip(b" \t")
    return binascii.a2b_qp(data)


class _QuotedPrintable:
    def __init__(self):
        self.rest = b""

    def feed(self, data):
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return toCRLF(decodeQuotedPrintable(data[:cut], final=False)) if cut else b""

    def finish(self):
        rest, self.rest = self.rest, b""
        return decodeQuotedPrintable(rest)


class _Identity:
    def feed(self, data):
        return data

    def finish(self):
        return b""


def decoder(encoding):
    if encoding == "base64":
        return _Base64()
    if encoding == "quoted-printable":
        return _QuotedPrintable()
    if encoding in ("7bit", "8bit", "binary"):
        return _Identity()
    raise UnknownEncoding(encoding)


def decodedChunks(f, start, end, encoding, chunk=_CHUNK):
    """Yield the decoded bytes of f[start:end]."""
    dec = decoder(encoding)
    f.seek(start)
    left = end - start
    while left > 0:
        data = f.read(min(chunk, left))
        if not data:
            break
        left -= len(data)
        out = dec.feed(data)
        if out:
            yield out
    out = dec.finish()
    if out:
        yield out


# The decoded text of the text parts.


_CT = re.compile(rb"(?im)^content-type:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)")
_CTE = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*(?:\r?\n[ \t]+)?([^\s;]+)")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_BOUNDARY = re.compile(rb'(?i)boundary[ \t]*=[ \t]*(?:"([^"]+)"|([^;\s]+))')
_CHARSET = re.compile(rb'(?i)charset[ \t]*=[ \t]*(?:"([^"]+)"|([^;\s]+))')
_BLANK = re.compile(rb"\r?\n\r?\n")


class TooComplex(Exception):
    """:func:`quickText` leaves this message to the email package (:func:`mimeText`)."""


def quickText(data: bytes, depth=0, maxParts=None):
    """
    The decoded text parts of a message as a list of str, by a light MIME
    walk (regexes for Content-Type, boundaries and encodings; base64 and
    quoted-printable undone; the part's charset applied; RFC 2231
    parameters through headers.parseParams).  Raises TooComplex for what
    it does not handle (base64 that does not decode).  ``maxParts``
    (a one-item list, counted down) caps the parts looked at: the rest of
    the message is given back as raw text.
    """
    if maxParts is None:
        maxParts = [MAX_PARTS]
    maxParts[0] -= 1
    if depth > 20:
        return []
    if data[:1] == b"\n" or data[:2] == b"\r\n":
        # No header fields: the blank line comes first (a part "--b CRLF CRLF text").
        header, body = b"", data[2 if data[:1] == b"\r" else 1:]
    else:
        m = _BLANK.search(data)
        if m is None:
            header, body = data, b""
        else:
            header, body = data[:m.start()], data[m.end():]
    ct = _CT.search(header)
    if ct is None:
        ctype, params = b"text/plain", b""
    else:
        value = ct.group(1)
        if b"\n" in value:
            value = _FOLD.sub(b"", value)  # RFC 5322 s2.2.3, as the scanner does
        ctype, _, params = value.partition(b";")
        ctype = ctype.strip().lower()
    if ctype.startswith(b"multipart/"):
        boundary = _quickParam(params, "boundary", _BOUNDARY)
        if not boundary:
            return []
        out = []
        pieces = _splitParts(body, boundary)
        # pieces: preamble, marker, part, marker, part, ... ; a "--" marker closes.
        for i in range(2, len(pieces), 2):
            if pieces[i - 1]:
                break  # after the close delimiter: the epilogue
            if maxParts[0] <= 0:
                out.append(b"".join(p for p in pieces[i:] if p).decode("utf-8", "replace"))
                break
            part = pieces[i]
            if part.startswith(b"\r\n"):
                part = part[2:]
            elif part.startswith(b"\n"):
                part = part[1:]
            out.extend(quickText(part, depth + 1, maxParts))
        return out
    if ctype in (b"message/rfc822", b"message/global"):
        return quickText(body, depth + 1, maxParts)
    if ctype and not ctype.startswith(b"text/"):
        return []
    cte = _CTE.search(header)
    cte = cte.group(1).lower() if cte else b"7bit"
    if cte == b"base64":
        try:
            body = binascii.a2b_base64(body)  # skips line breaks and other non-alphabet bytes
        except binascii.Error:
            raise TooComplex()
    elif cte == b"quoted-printable":
        body = decodeQuotedPrintable(body)
    charset = _quickParam(params, "charset", _CHARSET)
    charset = charset.decode("ascii", "replace") if charset else "utf-8"
    try:
        return [body.decode(charset, "replace")]
    except LookupError:
        return [body.decode("utf-8", "replace")]


def _quickParam(params: bytes, name, pattern):
    """A Content-Type parameter's value as bytes: by ``pattern``, or, with RFC 2231 parameters, parseParams."""
    if b"*" in params:
        value = paramValue(parseParams(";" + params.decode("ascii", "surrogateescape"))[1], name)
        return None if value is None else value.encode("utf-8", "surrogateescape")
    m = pattern.search(params)
    return (m.group(1) or m.group(2)) if m else None


def _splitParts(body: bytes, boundary: bytes):
    r"""
    ``re.split(rb"(?m)^--" + boundary + rb"(--)?[ \t]*\r?$", body)``: the
    preamble, then (close marker or None, part) pairs.  The pattern starts
    with a literal here, which the regex engine looks for with a fast
    search (a pattern that starts with ``^`` is tried at every position:
    five times slower); the line start is checked for each hit.
    """
    pattern = re.compile(rb"--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.M)
    out = []
    last = 0
    for m in pattern.finditer(body):
        start = m.start()
        if start and body[start - 1] != 0x0A:
            continue  # not at the start of a line
        out.append(body[last:start])
        out.append(m.group(1))
        last = m.end()
    out.append(body[last:])
    return out


def mimeText(data: bytes) -> str:
    """The decoded text of the text parts of a message (casefolded)."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    out = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        try:
            if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "quoted-printable":
                # RFC 2045 s6.7 rule 3, which the email package's decoder does not follow.
                raw = part.get_payload(decode=False)
                if isinstance(raw, str):
                    raw = raw.encode("ascii", "surrogateescape")
                payload = decodeQuotedPrintable(raw)
            else:
                payload = part.get_payload(decode=True) or b""
        except Exception:
            payload = b""
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            text = payload.decode("utf-8", "replace")
        out.append(text)
    return "\n".join(out).casefold()
