"""
Message structure for FETCH: a streaming MIME scan that records byte
offsets of every part (so sections are served by seeking in the stored
file, never by loading it), ENVELOPE and BODYSTRUCTURE (RFC 3501 s7.4.2),
section resolution (RFC 3501 s6.4.5) and content-transfer decoding for
BINARY (RFC 3516).

Header fields are parsed with the stdlib ``email`` package (compat32, so
values stay byte-exact); bodies are only scanned line by line.
"""

from __future__ import annotations

import binascii
import collections
import email.parser
import email.policy
import email.utils
import re

from mailnet.imap.serialize import nstring, plist, string

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
# What a scan may do on the reactor thread (session.py): past this many
# parts, lines read one by one (about 1 microsecond each), bytes of header
# fields (all parts together: the email package parses them, about 0.5 ms
# per KB), or bytes counted in bulk, scan() raises OverBudget and the
# caller does the work in a worker thread instead.
INLINE_BUDGET = (64, 8192, 32 * 1024, 8 * 1024 * 1024)

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


def _plainParams(params):
    """(key, value) pairs from email's ``get_params`` (without the first,
    the type itself); an RFC 2231 value (charset, language, text) is given
    back re-encoded as ``key*``."""
    out = []
    for key, val in params:
        if isinstance(val, tuple):
            charset, lang, text = val
            out.append((key + "*", "%s'%s'%s" % (charset or "", lang or "", text)))
        else:
            out.append((key, val))
    return out


def _contentType(part, default):
    msg = part.parsed()
    value = msg.get("Content-Type")
    if value is None:
        part.maintype, part.subtype = default
        part.params = [("charset", "us-ascii")] if default[0] == "text" else []
        return
    ctype = msg.get_content_type()  # falls back to text/plain on garbage
    if "/" not in str(value).split(";")[0]:
        ctype = "/".join(default)
    part.maintype, _, part.subtype = ctype.partition("/")
    try:
        raw = msg.get_params(header="content-type") or []
    except Exception:
        raw = []
    params = _plainParams(raw[1:])
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
        b = part.parsed().get_param("boundary")
        if isinstance(b, tuple):
            b = email.utils.collapse_rfc2231_value(b)
        if b:
            boundary = b"--" + b.encode("utf-8", "replace")
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


# ENVELOPE


def _headerValue(part, name):
    """The raw, unfolded value of the first ``name`` header, as bytes, or None."""
    msg = part.parsed()
    value = msg.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    value = re.sub(r"\r?\n(?=[ \t])", "", value).strip()
    return value.encode("utf-8", "surrogateescape")


class _AddrTokens:
    """A small RFC 5322 address-list tokenizer (comments skipped, quoting kept)."""

    def __init__(self, text):
        self.text = text
        self.i = 0

    def tokens(self):
        t = self.text
        n = len(t)
        out = []
        i = 0
        while i < n:
            c = t[i]
            if c in " \t\r\n":
                i += 1
            elif c == "(":
                depth = 0
                start = i
                while i < n:
                    if t[i] == "\\":
                        i += 2
                        continue
                    if t[i] == "(":
                        depth += 1
                    elif t[i] == ")":
                        depth -= 1
                        if depth == 0:
                            i += 1
                            break
                    i += 1
                out.append(("comment", t[start + 1:i - 1]))
            elif c == '"':
                j = i + 1
                buf = []
                while j < n and t[j] != '"':
                    if t[j] == "\\" and j + 1 < n:
                        j += 1
                    buf.append(t[j])
                    j += 1
                out.append(("quoted", "".join(buf)))
                i = j + 1
            elif c in "<>@,:;.[]":
                if c == "[":
                    j = t.find("]", i)
                    j = n - 1 if j < 0 else j
                    out.append(("atom", t[i:j + 1]))
                    i = j + 1
                    continue
                out.append((c, c))
                i += 1
            else:
                j = i
                while j < n and t[j] not in ' \t\r\n()"<>@,:;.[]':
                    j += 1
                out.append(("atom", t[i:j]))
                i = j
        return out


def parseAddresses(text):
    """
    Parse an address-list header value into a list of items: either
    ``(name, adl, mailbox, host)`` (strings or None) or ``("group", name,
    [addresses])``.
    """
    tokens = [tok for tok in _AddrTokens(text).tokens()]
    result = []
    i = 0

    def phraseOf(toks):
        words = [v for k, v in toks if k in ("atom", "quoted", ".")]
        out = ""
        for k, v in toks:
            if k == ".":
                out += "."
            elif k in ("atom", "quoted"):
                out += (" " if out and not out.endswith(".") else "") + v
        return out.strip() or None if words else None

    def mailboxFrom(toks):
        # toks: a single mailbox; name-addr or addr-spec.
        comments = [v for k, v in toks if k == "comment"]
        toks = [x for x in toks if x[0] != "comment"]
        adl = None
        if any(k == "<" for k, _ in toks):
            lt = next(j for j, (k, _) in enumerate(toks) if k == "<")
            gt = next((j for j, (k, _) in enumerate(toks) if k == ">" and j > lt), len(toks))
            name = phraseOf(toks[:lt])
            inner = toks[lt + 1:gt]
            if inner and inner[0][0] == "@":
                colon = next((j for j, (k, _) in enumerate(inner) if k == ":"), None)
                if colon is not None:
                    adl = "".join(v for _, v in inner[:colon])
                    inner = inner[colon + 1:]
        else:
            name = None
            inner = toks
            if comments:
                name = comments[-1].strip() or None
        at = max((j for j, (k, _) in enumerate(inner) if k == "@"), default=None)
        if at is None:
            local = "".join(v if k != "quoted" else v for k, v in inner)
            host = None
        else:
            local = "".join(v for k, v in inner[:at])
            host = "".join(v for k, v in inner[at + 1:])
        if not local and not host:
            return None
        return (name, adl, local or None, host)

    def split(toks):
        items, cur, depth = [], [], 0
        for tok in toks:
            if tok[0] == "<":
                depth += 1
            elif tok[0] == ">":
                depth = max(0, depth - 1)
            if tok[0] == "," and depth == 0:
                items.append(cur)
                cur = []
            else:
                cur.append(tok)
        items.append(cur)
        return [x for x in items if any(k != "comment" for k, _ in x)]

    while i < len(tokens):
        # Find a group: phrase ':' ... ';'
        j = i
        depth = 0
        colon = None
        while j < len(tokens) and tokens[j][0] != ",":
            if tokens[j][0] == "<":
                depth += 1
            elif tokens[j][0] == ">":
                depth -= 1
            elif tokens[j][0] == ":" and depth == 0:
                colon = j
                break
            j += 1
        if colon is not None:
            end = next((k for k in range(colon + 1, len(tokens)) if tokens[k][0] == ";"), len(tokens))
            members = [m for m in (mailboxFrom(t) for t in split(tokens[colon + 1:end])) if m]
            result.append(("group", phraseOf(tokens[i:colon]) or "", members))
            i = end + 1
            while i < len(tokens) and tokens[i][0] == ",":
                i += 1
            continue
        j = i
        depth = 0
        while j < len(tokens) and not (tokens[j][0] == "," and depth == 0):
            if tokens[j][0] == "<":
                depth += 1
            elif tokens[j][0] == ">":
                depth = max(0, depth - 1)
            j += 1
        m = mailboxFrom(tokens[i:j])
        if m:
            result.append(m)
        i = j + 1
    return result


def _bstr(value):
    return None if value is None else value.encode("utf-8", "surrogateescape")


def _addressList(part, name):
    raw = _headerValue(part, name)
    if raw is None:
        return None
    items = parseAddresses(raw.decode("utf-8", "surrogateescape"))
    out = []
    for item in items:
        if item[0] == "group" and len(item) == 3:
            out.append(plist([b"NIL", b"NIL", nstring(_bstr(item[1])), b"NIL"]))
            for name_, adl, local, host in item[2]:
                out.append(plist([nstring(_bstr(name_)), nstring(_bstr(adl)), nstring(_bstr(local)), nstring(_bstr(host))]))
            out.append(b"(NIL NIL NIL NIL)")
        else:
            name_, adl, local, host = item
            out.append(plist([nstring(_bstr(name_)), nstring(_bstr(adl)), nstring(_bstr(local)), nstring(_bstr(host))]))
    if not out:
        return None
    return b"(" + b"".join(out) + b")"


def envelope(part: Part) -> bytes:
    """ENVELOPE of a message Part (RFC 3501 s7.4.2)."""
    frm = _addressList(part, "From")
    sender = _addressList(part, "Sender") or frm
    replyTo = _addressList(part, "Reply-To") or frm
    items = [
        nstring(_headerValue(part, "Date")),
        nstring(_headerValue(part, "Subject")),
        frm or b"NIL",
        sender or b"NIL",
        replyTo or b"NIL",
        _addressList(part, "To") or b"NIL",
        _addressList(part, "Cc") or b"NIL",
        _addressList(part, "Bcc") or b"NIL",
        nstring(_headerValue(part, "In-Reply-To")),
        nstring(_headerValue(part, "Message-ID")),
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
    value = part.get("Content-Disposition")
    if value is None:
        return b"NIL"
    msg = part.parsed()
    try:
        params = msg.get_params(header="content-disposition") or []
    except Exception:
        params = []
    if not params:
        return b"NIL"
    kind = params[0][0]
    return plist([string(kind.encode("utf-8", "surrogateescape")), _paramList(_plainParams(params[1:]))])


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


class _QuotedPrintable:
    def __init__(self):
        self.rest = b""

    def feed(self, data):
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return binascii.a2b_qp(data[:cut]).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") if cut else b""

    def finish(self):
        rest, self.rest = self.rest, b""
        return binascii.a2b_qp(rest)


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

    __slots__ = ("root", "full", "_envelope", "_body", "_bodystructure")

    def __init__(self, root, full=True):
        self.root = root
        self.full = full
        self._envelope = None
        self._body = None
        self._bodystructure = None

    def envelope(self):
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
