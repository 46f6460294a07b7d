"""
Binary content made storable without changing it (RFC 3516 s4.4), without
I/O beyond the file objects given.

:func:`encodeBinaryParts` is for a message an IMAP client APPENDs as a
literal8 (``~{n}``): every leaf part whose bytes could not be kept and
served as they are -- ``Content-Transfer-Encoding: binary``, or a NUL, a
bare LF or a bare CR in its body -- is rewritten to base64 with its
``Content-Transfer-Encoding`` field changed to match, so its decoded bytes
are exactly what the client sent (BINARY fetches give them back, with the
NULs in a literal8), while the stored message is canonical text that a
BODY fetch can send in an ordinary literal (RFC 3501 s9: no NUL in a
literal) and the CRLF canonicalisation of the rest (headers, clean text
parts) leaves the part alone.  Dovecot does the same for ``binary`` parts
on a binary APPEND (its istream-binary-converter); it makes bare LF in a
7bit/8bit part CRLF, where this keeps the bytes.
"""

from __future__ import annotations

import base64
import re
import tempfile

from mailnet.mail import mime

_CHUNK = 1 << 16
# 57 bytes make one 76-character base64 line (RFC 2045 s6.8).
_LINE_BYTES = 57
_SPOOL_LIMIT = 1024 * 1024
_TOKEN = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)")
_CTE_FIELD = re.compile(rb"(?i)content-transfer-encoding[ \t]*:")


def encodeBinaryParts(f, maxParts=mime.MAX_PARTS, maxDepth=mime.MAX_DEPTH):
    """
    ``f`` (a binary file) with the parts described in the module docstring
    base64-encoded; a new spooled file positioned at 0, or ``f`` itself
    (positioned at 0) when no part needs it.  A message past the part cap
    is left as it is: its last part would run over the boundaries of the
    parts around it.
    """
    f.seek(0)
    root = mime.scan(f, maxParts=maxParts, maxDepth=maxDepth)
    leaves = []
    if _leaves(root, leaves) >= maxParts:
        f.seek(0)
        return f
    todo = [p for p in leaves if p.end > p.bodyStart and _mustEncode(f, p)]
    f.seek(0)
    if not todo:
        return f
    out = tempfile.SpooledTemporaryFile(max_size=_SPOOL_LIMIT)
    position = 0
    for part in todo:
        _copy(f, out, position, part.headerStart)
        f.seek(part.headerStart)
        out.write(_base64Header(f.read(part.bodyStart - part.headerStart)))
        _encode(f, out, part.bodyStart, part.end)
        position = part.end
    _copy(f, out, position, None)
    out.seek(0)
    f.seek(0)
    return out


def _leaves(part, out):
    """Put the leaf parts under ``part`` in ``out``; returns how many parts there are (``part`` counted)."""
    if part.children is not None:
        return 1 + sum(_leaves(child, out) for child in part.children)
    if part.message is not None:
        return 1 + _leaves(part.message, out)
    out.append(part)
    return 1


def _encoding(part):
    """The part's transfer encoding, its first word (a field can hold a comment or be folded)."""
    m = _TOKEN.match(part.get("Content-Transfer-Encoding") or "")
    return m.group(1).lower() if m else "7bit"


def _mustEncode(f, part):
    if part.parsed().get_content_maintype() in ("multipart", "message"):
        # A container not opened (the depth cap): its body is other parts.
        return False
    encoding = _encoding(part)
    if encoding == "binary":
        return True
    if encoding not in ("7bit", "8bit"):
        return False  # base64, quoted-printable (7-bit text) or unknown: kept as it is
    f.seek(part.bodyStart)
    left = part.end - part.bodyStart
    previous = b""
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        if b"\x00" in chunk:
            return True
        data = previous + chunk
        # A CR at the end of the chunk may pair with an LF in the next one.
        cut = len(data) - 1 if data.endswith(b"\r") else len(data)
        lines = data[:cut]
        pairs = lines.count(b"\r\n")
        if lines.count(b"\n") != pairs or lines.count(b"\r") != pairs:
            return True
        previous = data[cut:]
    return previous == b"\r"


def _base64Header(header):
    """The part's header with its Content-Transfer-Encoding field(s) replaced by ``base64``."""
    lines = header.splitlines(keepends=True)
    kept = []
    skipping = False
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t") and line.strip():
            continue  # a folded continuation of the field dropped
        skipping = _CTE_FIELD.match(line) is not None
        if not skipping:
            kept.append(line)
    if kept and kept[-1] in (b"\r\n", b"\n", b"\r"):
        blank = kept.pop()
    else:
        blank = b"\r\n"
    return b"".join(kept) + b"Content-Transfer-Encoding: base64\r\n" + blank


def _encode(f, out, start, end):
    """Bytes start..end of ``f`` as base64 lines of 76 characters, CRLF between them (none after the last:
    the CRLF before a boundary is the boundary's, RFC 2046 s5.1.1)."""
    f.seek(start)
    left = end - start
    carry = b""
    first = True
    while left > 0 or carry:
        chunk = f.read(min(_LINE_BYTES * 1024, left)) if left > 0 else b""
        left -= len(chunk)
        if not chunk:
            left = 0
        data = carry + chunk
        whole = len(data) if left <= 0 else len(data) - len(data) % _LINE_BYTES
        carry = data[whole:]
        lines = [base64.b64encode(data[i:i + _LINE_BYTES]) for i in range(0, whole, _LINE_BYTES)]
        if lines:
            out.write((b"" if first else b"\r\n") + b"\r\n".join(lines))
            first = False


def _copy(f, out, start, end):
    f.seek(start)
    left = None if end is None else end - start
    while left is None or left > 0:
        chunk = f.read(_CHUNK if left is None else min(_CHUNK, left))
        if not chunk:
            break
        out.write(chunk)
        if left is not None:
            left -= len(chunk)
