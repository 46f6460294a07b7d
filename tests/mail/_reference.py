"""
The copies mailnet.mail replaced, frozen as they were (main before issue 11),
so the tests can show the one home behaves as every old copy did.  Not used
by mailnet itself.
"""

import base64
import binascii
import re


# smtp/parser.py (strict; raised ParseError, here ValueError)
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")


def parserIsXtext(text):
    return bool(_XTEXT.fullmatch(text))


def parserDecodeXtext(text):
    if not _XTEXT.fullmatch(text):
        raise ValueError("Bad xtext (RFC 3461 s4)")
    raw = re.sub(rb"\+([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("ascii"))
    return raw.decode("utf-8", "replace")


def parserEncodeXtext(text):
    out = []
    for byte in text.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


# queue/dsn.py
def dsnXtextDecode(value):
    def sub(m):
        return chr(int(m.group(1), 16))

    return re.sub(r"\+([0-9A-Fa-f]{2})", sub, value)


# queue/client.py
def clientXtextEncode(value):
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


# store/_mutf7.py
def storeEncodeMutf7(name):
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


def storeDecodeMutf7(text):
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
            if storeEncodeMutf7(decoded) != "&" + chunk + "-":
                raise ValueError(f"non-canonical modified UTF-7: {text!r}")
            out.append(decoded)
        i = end + 1
    return "".join(out)


# imap/serialize.py
def imapEncodeMailbox(name):
    out = bytearray()
    pending = []

    def flush():
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.extend(b"&" + base64.b64encode(data).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        o = ord(ch)
        if 0x20 <= o <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class _Shift(str):
    pass


_SHIFT = _Shift("")


def imapDecodeMailbox(data):
    out = []
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c > 0x7E or c < 0x20:
            raise ValueError("8-bit")
        if c != 0x26:
            out.append(chr(c))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise ValueError("unterminated &")
        chunk = data[i + 1:end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if any(b not in _B64 for b in chunk) or len(chunk) % 4 == 1:
            raise ValueError("bad base64")
        raw = base64.b64decode(chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4))
        if len(raw) % 2:
            raise ValueError("odd UTF-16")
        try:
            text = raw.decode("utf-16-be")
        except UnicodeDecodeError:
            raise ValueError("bad UTF-16")
        if any(0x20 <= ord(ch) <= 0x7E for ch in text):
            raise ValueError("encoded ASCII")
        if out and out[-1] is _SHIFT:
            raise ValueError("adjacent encoded runs")
        out.append(text)
        out.append(_SHIFT)
    return "".join(x for x in out if x is not _SHIFT)


# pop3/protocol.py
_LINE_DOT = re.compile(rb"\n\.")


class Pop3DotStuffer:
    def __init__(self):
        self.atLineStart = True
        self.tail = b""

    def feed(self, chunk):
        if not chunk:
            return b""
        out = _LINE_DOT.sub(b"\n..", chunk)
        if self.atLineStart and chunk[:1] == b".":
            out = b"." + out
        self.atLineStart = chunk[-1:] == b"\n"
        self.tail = (self.tail + chunk[-2:])[-2:]
        return out

    def end(self):
        if self.tail == b"" or self.tail == b"\r\n":
            return b".\r\n"
        return b"\r\n.\r\n"


# queue/client.py
class ClientDotStuffer:
    def __init__(self):
        self._lineStart = True
        self._tail = b"\r\n"

    def feed(self, chunk):
        if not chunk:
            return b""
        out = chunk.replace(b"\n.", b"\n..")
        if self._lineStart and chunk[:1] == b".":
            out = b"." + out
        self._lineStart = chunk.endswith(b"\n")
        self._tail = (self._tail + chunk)[-2:]
        return out

    def end(self):
        return (b"" if self._tail == b"\r\n" else b"\r\n") + b".\r\n"


# smtp/replies.py
class SmtpReply:
    __slots__ = ("code", "enhanced", "lines", "data")

    def __init__(self, code, enhanced, text):
        if isinstance(text, str):
            text = [text]
        lines = [" ".join(line.split()) for line in text] or [""]
        if enhanced and enhanced[0] != str(code)[0]:
            raise ValueError(f"enhanced code {enhanced} does not agree with {code}")
        self.code = code
        self.enhanced = enhanced
        self.lines = lines
        prefix = f"{enhanced} " if enhanced else ""
        out = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out.append(f"{code}{sep}{prefix}{line}\r\n")
        self.data = "".join(out).encode("utf-8")

    @property
    def text(self):
        return " ".join(self.lines)


# queue/client.py
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")


class ClientReply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines

    @property
    def enhanced(self):
        m = _ENHANCED.match(self.lines[0]) if self.lines else None
        if m and m.group(1)[0] == str(self.code)[0]:
            return m.group(1)
        return None

    @property
    def text(self):
        parts = []
        for line in self.lines:
            m = _ENHANCED.match(line)
            parts.append(line[m.end():] if m else line)
        return " ".join(p.strip() for p in parts if p.strip())

    @property
    def positive(self):
        return 200 <= self.code < 400

    def __str__(self):
        enhanced = self.enhanced
        return " ".join(str(x) for x in (self.code, enhanced, self.text) if x)

    def error(self, remote=None, default=None):
        from mailnet.errors import DeliveryError

        if 400 <= self.code < 600:
            enhanced = self.enhanced or (f"{self.code // 100}.{default}" if default else None)
            return DeliveryError(self.code, enhanced, self.text, self.code < 500, remote)
        return DeliveryError(451, "4.5.0", f"unexpected reply: {self}", True, remote)


def _smtpWithText(self, text):
    return SmtpReply(self.code, self.enhanced, text)


SmtpReply.withText = _smtpWithText
