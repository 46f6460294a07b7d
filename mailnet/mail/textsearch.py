"""
Text search in one message, as IMAP SEARCH (RFC 3501 s6.4.4) and JMAP
Email/query (RFC 8621 s4.4.1) both match: case-insensitive substring on
decoded text.  Header values have RFC 2047 encoded words decoded; address
fields are matched as ``Name <mailbox@host>`` (as Dovecot does); body text
is the text parts with base64 / quoted-printable undone and the part's
charset applied.  A plain 7-bit single-part message is matched on its bytes
directly (the same result, without building a MIME tree).

No protocol here: :class:`MessageText` is what IMAP's search candidate and
JMAP's query candidate share.  Needles must be casefolded by the caller.
"""

from __future__ import annotations

import email
import email.policy
import re

from mailnet.mail.headers import decodeHeader, decodeWords, headerString, parseAddresses
from mailnet.mail.mime import MAX_HEADER, MAX_PARTS, TooComplex, mimeText, quickText

_ONLY_7BIT = re.compile(rb"content-transfer-encoding:\s*(base64|quoted-printable)")


class MessageText:
    """
    The searchable text of one message, worked out on demand from ``data``
    (the message bytes; set by the owner before the first look).
    """

    __slots__ = ("data", "_header", "_bodyText", "_allText", "_fast", "_bodyOffset")

    def __init__(self, data=None):
        self.data = data
        self._header = None
        self._bodyText = None
        self._allText = None
        self._fast = None
        self._bodyOffset = None

    def bodyOffset(self):
        if self._bodyOffset is None:
            i = self.data.find(b"\r\n\r\n")
            j = self.data.find(b"\n\n")
            if i < 0 and j < 0:
                self._bodyOffset = len(self.data)
            elif i < 0 or (0 <= j < i):
                self._bodyOffset = j + 2
            else:
                self._bodyOffset = i + 4
        return self._bodyOffset

    def header(self):
        if self._header is None:
            end = min(self.bodyOffset(), MAX_HEADER)
            self._header = email.message_from_bytes(self.data[:end], policy=email.policy.compat32)
        return self._header

    def fast(self):
        """Whether raw bytes can stand for the decoded text: 7-bit, no encodings, single part."""
        if self._fast is None:
            data = self.data
            if not data.isascii():
                self._fast = False
            else:
                low = data.lower()
                self._fast = (b"content-transfer-encoding" not in low or _ONLY_7BIT.search(low) is None) \
                    and b"=?" not in data and b"multipart/" not in low and b"message/rfc822" not in low
                if self._fast:
                    self._allText = low
        return self._fast

    def headerValues(self, name):
        values = self.header().get_all(name) or []
        return [decodeHeader(v) for v in values]

    def bodyText(self, maxParts=MAX_PARTS):
        if self._bodyText is None:
            try:
                self._bodyText = "\n".join(quickText(self.data, maxParts=[maxParts])).casefold()
            except TooComplex:
                if self.data.count(b"\n--") > maxParts:
                    # Too many parts for the email package (seconds of work):
                    # the whole message as raw text.
                    self._bodyText = self.data.decode("utf-8", "replace").casefold()
                else:
                    self._bodyText = mimeText(self.data)
        return self._bodyText

    # The matches (needles casefolded; the message loaded)

    def mayHave(self, name) -> bool:
        """False when the header section surely has no field ``name`` (no parse: a byte search)."""
        head = self.data[:min(self.bodyOffset(), MAX_HEADER)].lower()
        key = name.lower().encode("ascii", "replace")
        return head.startswith(key) or (b"\n" + key) in head

    def headerContains(self, name, needle) -> bool:
        """
        Field ``name`` (None: any field) contains ``needle`` in its decoded
        value; an empty needle matches every message with the field.
        """
        if name is not None and not self.mayHave(name):
            return False
        if name is None:
            values = [v for _, v in self.header().items()]
        else:
            values = self.header().get_all(name)
        if not values:
            return False
        if not needle:
            return True
        return any(needle in decodeHeader(value) for value in values)

    def addressContains(self, name, needle) -> bool:
        """An address field (From, To, Cc, Bcc) contains ``needle`` as :func:`addressText` writes it."""
        if not self.mayHave(name):
            return False
        values = self.header().get_all(name)
        if not values:
            return False
        if not needle:
            return True
        return any(needle in addressText(value) for value in values)

    def bodyContains(self, needle, maxParts=MAX_PARTS) -> bool:
        if not needle:
            return True
        if self.fast() and needle.isascii():
            return self._allText.find(needle.encode("ascii"), self.bodyOffset()) >= 0
        return needle in self.bodyText(maxParts)


def addressText(value) -> str:
    """
    An address-list field as SEARCH matches it: each address ``Name
    <mailbox@host>`` (or ``mailbox@host``), a group ``Name: ...;``, joined
    by ``, ``; casefolded.  A field with no address in it is matched as
    its decoded text.
    """
    text = re.sub(r"\r?\n[ \t]", " ", headerString(value))
    out = []
    for item in parseAddresses(text):
        if item[0] == "group" and len(item) == 3:
            members = ", ".join(_oneAddress(m) for m in item[2])
            out.append("%s: %s;" % (decodeWords(item[1]) if item[1] else "", members))
        else:
            out.append(_oneAddress(item))
    if not out:
        return decodeHeader(text)
    return ", ".join(out).casefold()


def pairsText(pairs) -> str:
    """``((name, email), ...)`` (the list index's address fields) written as :func:`addressText` does."""
    return ", ".join("%s <%s>" % (name, address) if name else address for name, address in pairs).casefold()


def _oneAddress(item):
    name, _, mailbox, host = item
    address = (mailbox or "") + ("@" + host if host else "")
    if name:
        name = decodeWords(name) if "=?" in name else name
        return "%s <%s>" % (name, address)
    return address
