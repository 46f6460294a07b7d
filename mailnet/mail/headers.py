"""
Header fields, without I/O: RFC 2047 encoded words (:func:`decodeWords`,
:func:`decodeHeader`), RFC 5322 address lists (:func:`parseAddresses`),
unfolding (:func:`unfold`) and MIME parameter lists with RFC 2231
continuations merged as Dovecot does (:func:`parseParams`); raw 8-bit
(RFC 6532) values as text, byte for byte (:func:`headerString`).
"""

from __future__ import annotations

import binascii
import email.header
import re
import urllib.parse


# RFC 5322 s2.2.3: unfolding removes every CRLF that is followed by WSP.
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def unfold(value: str) -> str:
    """A header field value unfolded (RFC 5322 s2.2.3); the WSP stays."""
    return _FOLD.sub("", value) if "\n" in value else value


def headerString(value) -> str:
    """
    A header value from the email package (compat32) as text: raw 8-bit
    bytes, which compat32 hands over as a ``Header`` of "unknown-8bit"
    (``str()`` of it turns them into U+FFFD), are taken as UTF-8 (RFC 6532),
    and bytes that are not UTF-8 kept as surrogate escapes, so that
    ``.encode("utf-8", "surrogateescape")`` gives back the bytes sent.
    """
    if isinstance(value, str):
        return value
    try:
        chunks = email.header.decode_header(value)
    except Exception:
        return str(value)
    return "".join(c.decode("utf-8", "surrogateescape") if isinstance(c, bytes) else c for c, _ in chunks)


# The header fields of a raw message

_FIELD_SCANS: dict = {}


def _fieldScans(names):
    """(at the start, after a line end): the compiled scans for ``names``."""
    scans = _FIELD_SCANS.get(names)
    if scans is None:
        alternatives = b"|".join(re.escape(n) for n in names)
        # A field with its continuation lines (RFC 5322 s2.2.3).  The
        # literal "\n" first lets the regex engine skip ahead: twice as
        # fast as "^" in MULTILINE mode.
        value = rb"[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)"
        scans = (re.compile(rb"(" + alternatives + rb")" + value, re.I),
                 re.compile(rb"\n(" + alternatives + rb")" + value, re.I))
        if len(_FIELD_SCANS) < 64:
            _FIELD_SCANS[names] = scans
    return scans


def headerFields(data: bytes, names: tuple, limit: int | None = None) -> dict:
    """
    ``{name: raw value}`` of the first field of each of ``names`` (lower
    case bytes, ``(b"subject", b"date")``) in the header section at the
    start of ``data`` (which may hold the whole message), looking at no
    more than ``limit`` bytes.  A value is as in the message, after the
    colon: still folded (its line ends kept, so each caller unfolds as its
    RFC says) and not stripped.  The header section ends at the first
    empty line; a message that starts with one has no fields.

    The one scanner of named fields, used by IMAP SORT
    (:mod:`mailnet.imap.sort`), THREAD and the store's thread ids
    (:mod:`mailnet.mail.threading`).
    """
    if limit is None:
        limit = len(data)
    if data[:1] == b"\n" or data[:2] == b"\r\n":
        return {}
    end = data.find(b"\n\r\n", 0, limit)
    end2 = data.find(b"\n\n", 0, limit if end < 0 else end)
    if end2 >= 0:
        end = end2
    end = min(len(data), limit) if end < 0 else end + 1
    first, following = _fieldScans(names)
    out = {}
    m = first.match(data, 0, end)
    if m is not None:
        out[m.group(1).lower()] = m.group(2)
    for m in following.finditer(data, 0, end):
        name = m.group(1).lower()
        if name not in out:
            out[name] = m.group(2)
    return out


def decodeHeader(value) -> str:
    """A header value with RFC 2047 words decoded, unfolded, casefolded."""
    if not isinstance(value, str):
        value = headerString(value)
    value = re.sub(r"\r?\n[ \t]", " ", value)
    if "=?" in value:
        value = decodeWords(value)
    return value.casefold()


# RFC 2047 s2: =?charset?encoding?encoded-text?= (RFC 2231 s5: charset*language).
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")


def decodeWords(value: str) -> str:
    """
    RFC 2047 encoded words decoded, in one linear pass.  (The email
    package's ``decode_header`` joins adjacent words by concatenation: an
    850 KB Subject of encoded words took it 10 s.)  Adjacent words in one
    charset are decoded together, so a character split between two words
    survives; white space between two encoded words is dropped (RFC 2047
    s6.2); a word that does not decode is kept as it is.
    """
    out = []  # [str] or [charset, [bytes, ...]] for a run of encoded words
    pos = 0
    lastEncoded = False
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos:m.start()]
        pos = m.end()
        charset = m.group(1).split("*", 1)[0].lower()
        text = m.group(3).encode("ascii", "replace")
        try:
            if m.group(2) in "qQ":
                data = binascii.a2b_qp(text, header=True)
            else:
                data = binascii.a2b_base64(text + b"=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            out.append(gap + m.group(0))
            lastEncoded = False
            continue
        if gap and not (lastEncoded and gap.isspace()):
            out.append(gap)
            lastEncoded = False
        if lastEncoded and out[-1][0] == charset:
            out[-1][1].append(data)
        else:
            out.append([charset, [data]])
        lastEncoded = True
    out.append(value[pos:])
    text = []
    for item in out:
        if isinstance(item, str):
            text.append(item)
            continue
        data = b"".join(item[1])
        try:
            text.append(data.decode(item[0], "replace"))
        except LookupError:
            text.append(data.decode("utf-8", "replace"))
    return "".join(text)


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
            elif c == ")":
                # A ")" without its "(" is no token (RFC 5322 s3.2.2): skip
                # it.  The atom branch below would read an empty atom and
                # never advance.
                i += 1
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


# MIME parameters (RFC 2045 s5.1, RFC 2231)

# Separators and comments before a parameter; then one "key = value"
# (RFC 2045 s5.1): the value a quoted string (group 2, escapes still in;
# one left open runs to the end, as nothing after it can be told apart) or
# the rest up to the next ";" (group 3: a token, leniently anything but
# ";").  Every pattern here is linear in its input: a header is the
# sender's, up to 256 KB (a comment is "(" without "(" inside, a run of
# separators is consumed by one match of its own, never re-scanned).
_SEPARATORS = re.compile(r"(?:[\s;]+|\([^()]*\))*")
_PARAM = re.compile(r'([^\s;=("]+)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"?|([^;]*))', re.S)
_ESCAPE = re.compile(r"\\(.)", re.S)
_COMMENT = re.compile(r"\([^()]*\)")
# RFC 2231 s3, s4: key*N (a continuation), key*N* and key* (extended: charset'language'%XX).
_SECTION = re.compile(r"([^*]+)\*(\d{0,6})(\*?)$")


def parseParams(value: str):
    """
    A Content-Type or Content-Disposition value (str; unfolded here) as
    ``(head, [(key, value), ...])``: ``head`` is what comes before the
    first ";" (comments removed, not lowercased), keys keep their case,
    quoted values are unquoted.

    RFC 2231 parameters are given back in their RFC 2231 form, never
    decoded, as Dovecot's rfc2231_parse does it (lib-mail/rfc2231-parser.c):
    the continuations of one key (``key*0*``, ``key*1``, ...) are merged
    into one ``key*`` (if any section is extended; the unencoded sections'
    "%" written as "%25", and "''" put in front when the first section is
    not extended) or one plain ``key``; plain parameters come first, in
    their order, then the merged ones sorted by key.  A key whose
    sections have a gap or a duplicate is given back section by section
    (``key*N*`` / ``key*N``).  (Unlike Dovecot 2.3.19, a parameter after
    ";;" is kept, and a ``key*`` after some ``other*N`` stays ``key*``.)
    """
    value = unfold(value)
    head, sep, rest = value.partition(";")
    if "(" in head:
        head = _COMMENT.sub("", head)
    head = head.strip()
    params = []
    if not sep:
        return head, params
    sections = []  # RFC 2231 (key, section number, extended, value)
    pos = 0
    end = len(rest)
    skip = _SEPARATORS.match
    match = _PARAM.match
    while True:
        pos = skip(rest, pos).end()
        if pos >= end:
            break
        m = match(rest, pos)
        if m is None:
            nxt = rest.find(";", pos + 1)
            if nxt < 0:
                break
            pos = nxt
            continue
        pos = m.end()
        key = m.group(1)
        if m.group(2) is not None:
            val = m.group(2)
            if "\\" in val:
                val = _ESCAPE.sub(r"\1", val)
        else:
            val = m.group(3).strip()
            if val.endswith(")"):
                # A comment after a token value: charset=us-ascii (Plain text).
                cut = val.rfind("(")
                if cut > 0 and val[cut - 1] in " \t" and ")" not in val[cut:-1]:
                    val = val[:cut].rstrip()
        if "*" in key:
            s = _SECTION.match(key)
            if s is not None:
                index = int(s.group(2)) if s.group(2) else 0
                sections.append((s.group(1), index, bool(s.group(3)) or not s.group(2), val))
                continue
        params.append((key, val))
    if sections:
        params.extend(_mergeSections(sections))
    return head, params


def _mergeSections(sections):
    """RFC 2231 s3: the sections of each key put together (see :func:`parseParams`)."""
    # Sorted by key then section number; grouped by key regardless of case.
    sections.sort(key=lambda s: (s[0], s[1]))
    out = []
    i = 0
    n = len(sections)
    while i < n:
        first = sections[i][0].lower()
        j = i
        ok = True
        extended = False
        while j < n and sections[j][0].lower() == first:
            if sections[j][1] != j - i:
                ok = False
            extended = extended or sections[j][2]
            j += 1
        group = sections[i:j]
        i = j
        if not ok:
            for key, index, ext, val in group:
                out.append(("%s*%d%s" % (key, index, "*" if ext else ""), val))
            continue
        pieces = ["''"] if extended and not group[0][2] else []
        for _, _, ext, val in group:
            pieces.append(val.replace("%", "%25") if extended and not ext else val)
        out.append((group[0][0] + ("*" if extended else ""), "".join(pieces)))
    return out


def paramValue(params, name):
    """
    The value of parameter ``name`` (case-insensitive) from
    :func:`parseParams`' list, as text: an RFC 2231 ``name*`` value is
    decoded (its charset, %XX), a plain ``name`` preferred.  None if absent.
    """
    name = name.lower()
    extended = None
    for key, val in params:
        low = key.lower()
        if low == name:
            return val
        if extended is None and low == name + "*":
            extended = val
    if extended is None:
        return None
    return decodeRfc2231(extended)


def decodeRfc2231(value: str) -> str:
    """An RFC 2231 s4 extended value, ``charset'language'%XX...``, as text (no charset: UTF-8, a superset of ASCII)."""
    charset, quote, rest = value.partition("'")
    if not quote:
        charset, rest = "", value
    else:
        rest = rest.partition("'")[2]
    data = urllib.parse.unquote_to_bytes(rest.encode("utf-8", "surrogateescape"))
    try:
        return data.decode(charset or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")
