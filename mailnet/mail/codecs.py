"""
Text codecs of the mail protocols, without I/O.

* :func:`isXtext`, :func:`encodeXtext`, :func:`decodeXtext`: RFC 3461 s4
  xtext (DSN parameters ENVID and ORCPT, and AUTH= of RFC 4954 s5).
* :func:`encodeMutf7`, :func:`decodeMutf7`: IMAP modified UTF-7
  (RFC 3501 s5.1.3), for mailbox names on the wire and (as Dovecot does)
  folder names on disk.
"""

from __future__ import annotations

import base64
import binascii
import re

# -- xtext -----------------------------------------------------------------

# RFC 3461 s4: xtext = *( xchar / hexchar ); hexchar = "+" 2HEXDIG (upper case
# in the grammar; lower case accepted).
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")
_HEXCHAR = re.compile(r"\+([0-9A-Fa-f]{2})")
_HEXCHAR_BYTES = re.compile(rb"\+([0-9A-Fa-f]{2})")


def isXtext(text: str) -> bool:
    return bool(_XTEXT.fullmatch(text))


def decodeXtext(text: str, strict: bool = True) -> str:
    """
    RFC 3461 s4 xtext -> text.

    ``strict``: ``text`` must be xtext (else ValueError), and the decoded
    bytes are read as UTF-8 (RFC 6533), invalid sequences replaced.  Used
    on what a client sends.

    Not ``strict``: every ``+XX`` becomes the character U+00XX and anything
    else is kept as it is; never raises.  Used on what we stored ourselves
    (DSN reports of ENVID and ORCPT).
    """
    if not strict:
        return _HEXCHAR.sub(_hexChar, text)
    if not _XTEXT.fullmatch(text):
        raise ValueError("Bad xtext (RFC 3461 s4)")
    raw = _HEXCHAR_BYTES.sub(_hexByte, text.encode("ascii"))
    return raw.decode("utf-8", "replace")


def _hexChar(m):
    return chr(int(m.group(1), 16))


def _hexByte(m):
    return bytes([int(m.group(1), 16)])


def encodeXtext(text: str) -> str:
    """Text -> RFC 3461 s4 xtext (``+``, ``=``, controls and non-ASCII as ``+HH``)."""
    out = []
    for byte in text.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


# -- modified UTF-7 --------------------------------------------------------
#
# RFC 3501 s5.1.3: printable ASCII other than "&" stands for itself, "&" is
# "&-", and any other run of characters is "&" + base64 of its UTF-16BE
# form, with "," instead of "/" and no padding, + "-".

_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def encodeMutf7(name: str) -> str:
    """A name -> its modified UTF-7 form (always canonical)."""
    out = []
    run = []

    def flush():
        if run:
            data = "".join(run).encode("utf-16-be")
            b64 = base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            run.clear()

    for c in name:
        if 0x20 <= ord(c) <= 0x7E:
            flush()
            out.append("&-" if c == "&" else c)
        else:
            run.append(c)
    flush()
    return "".join(out)


def decodeMutf7(text: str) -> str:
    """
    Modified UTF-7 -> the name.  Raises ValueError on anything not in the
    canonical form :func:`encodeMutf7` writes: 8-bit or control characters,
    an unterminated ``&``, bad base64 or UTF-16, encoded printable ASCII,
    two encoded runs next to each other, or non-zero padding bits.
    """
    out = []
    i, n = 0, len(text)
    afterRun = False
    while i < n:
        c = text[i]
        if not 0x20 <= ord(c) <= 0x7E:
            raise ValueError("not modified UTF-7 (8-bit or control character)")
        if c != "&":
            out.append(c)
            afterRun = False
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("not modified UTF-7 (unterminated &)")
        chunk = text[i + 1:end]
        i = end + 1
        if not chunk:
            out.append("&")
            afterRun = False
            continue
        if len(chunk) % 4 == 1 or not _B64.issuperset(chunk):
            raise ValueError("not modified UTF-7 (bad base64)")
        try:
            raw = base64.b64decode(chunk.replace(",", "/") + "=" * (-len(chunk) % 4), validate=True)
            decoded = raw.decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("not modified UTF-7 (bad UTF-16)") from None
        if any(0x20 <= ord(ch) <= 0x7E for ch in decoded):
            raise ValueError("not modified UTF-7 (encoded ASCII)")
        if afterRun:
            raise ValueError("not modified UTF-7 (adjacent encoded runs)")
        if encodeMutf7(decoded) != "&" + chunk + "-":
            # Non-zero padding bits: another spelling of the same name.
            raise ValueError("not modified UTF-7 (non-canonical)")
        out.append(decoded)
        afterRun = True
    return "".join(out)
