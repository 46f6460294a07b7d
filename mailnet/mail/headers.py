"""
Header fields, without I/O: RFC 2047 encoded words (:func:`decodeWords`,
:func:`decodeHeader`) and RFC 5322 address lists (:func:`parseAddresses`).
"""

from __future__ import annotations

import binascii
import email.header
import re


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
