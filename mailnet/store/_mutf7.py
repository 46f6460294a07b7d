"""
IMAP modified UTF-7 (RFC 3501 s5.1.3), the encoding Dovecot uses for
non-ASCII folder names on disk in Maildir++.

Printable ASCII other than ``&`` stands for itself, ``&`` is ``&-``, and any
other run of characters is ``&`` + base64 of its UTF-16BE form, with ``,``
instead of ``/`` and no padding, + ``-``.
"""

from __future__ import annotations

import base64
import binascii


def encode(name: str) -> str:
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


def decode(text: str) -> str:
    """Decode modified UTF-7; raises ValueError on malformed input."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "&":
            if not 0x20 <= ord(c) <= 0x7E:
                raise ValueError(f"non-ASCII character in modified UTF-7: {text!r}")
            out.append(c)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError(f"unterminated modified UTF-7 shift: {text!r}")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                data = base64.b64decode(b64, validate=True)
                decoded = data.decode("utf-16-be")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ValueError(f"bad modified UTF-7: {text!r}") from e
            if encode(decoded) != "&" + chunk + "-":
                # Not the canonical form (e.g. encoded printable ASCII).
                raise ValueError(f"non-canonical modified UTF-7: {text!r}")
            out.append(decoded)
        i = end + 1
    return "".join(out)
