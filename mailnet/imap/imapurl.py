"""
IMAP URLs (RFC 5092) as CATENATE (RFC 4469) uses them, without I/O: the
message or body part a ``URL`` part of an APPEND refers to.

Accepted forms (RFC 5092 s6, the ``imessagepart`` of this server):

* ``/enc-mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]``
  (an absolute path: the relative form RFC 4469 s3 shows);
* ``;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]``: a message of the selected
  mailbox (RFC 5092 s7.1, relative to the selected mailbox's URL);
* ``imap://[user@]host[:port]/...`` whose user, if given, is the
  session's own (the host is not checked: this server has no list of its
  names).  ``;AUTH=`` in the user part is ignored.

The mailbox name is percent-encoded UTF-8 (RFC 5092 s3.2), the section a
percent-encoded ``section-text`` of ``BODY[...]``.  URLAUTH (``;EXPIRE=``,
``;URLAUTH=``) and search URLs are not supported: :class:`BadURL`.
Parameter names are case-insensitive; the ``/`` before ``;SECTION`` and
``;PARTIAL`` may be left out (RFC 2192's older examples do).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from mailnet.imap.parser import ParseError, parseUrlSection

# RFC 5092 s3: nz-number; a number is at most 32 bits in IMAP.
_NZ = rb"[1-9][0-9]{0,9}"
_PATH = re.compile(
    rb"(?P<mailbox>[^;?#]*?)"
    rb"(?:;UIDVALIDITY=(?P<validity>" + _NZ + rb"))?"
    rb"/?;UID=(?P<uid>" + _NZ + rb")"
    rb"(?:/?;SECTION=(?P<section>[^;/?#]*))?"
    rb"(?:/?;PARTIAL=(?P<offset>[0-9]{1,10})(?:\.(?P<length>" + _NZ + rb"))?)?"
    rb"/?$",
    re.IGNORECASE,
)
_NETWORK = re.compile(rb"imap://(?:(?P<user>[^@/;]*)(?:;AUTH=[^@/]*)?@)?[^/@]+(?P<path>/.*)$", re.IGNORECASE | re.DOTALL)
_MAX_NUMBER = 2 ** 32 - 1


class BadURL(Exception):
    """A URL this server cannot resolve (``str(e)`` says why; answered ``NO [BADURL url]``)."""


class MessageURL:
    """
    A message or body part: ``mailbox`` (str, None for the selected one),
    ``uidValidity`` (int or None), ``uid``, ``section`` (a parser
    ``Section`` or None for the whole message), ``partial`` ((offset,
    length or None) or None).
    """

    __slots__ = ("mailbox", "uidValidity", "uid", "section", "partial")

    def __init__(self, mailbox, uidValidity, uid, section, partial):
        self.mailbox = mailbox
        self.uidValidity = uidValidity
        self.uid = uid
        self.section = section
        self.partial = partial

    def __repr__(self):
        return "<MessageURL %r;UIDVALIDITY=%r;UID=%r %r %r>" % (self.mailbox, self.uidValidity, self.uid,
                                                                 self.section, self.partial)


def _number(value, what):
    n = int(value)
    if n > _MAX_NUMBER:
        raise BadURL("%s out of range" % what)
    return n


def parse(url: bytes, user: str | None = None) -> MessageURL:
    """The :class:`MessageURL` of ``url`` (bytes as the client sent them); raises :class:`BadURL`."""
    if not url:
        raise BadURL("empty URL")
    if any(c < 0x21 or c > 0x7E for c in url):
        raise BadURL("URL has characters that must be percent-encoded")
    if url[:7].lower() == b"imap://":
        m = _NETWORK.match(url)
        if m is None:
            raise BadURL("not an IMAP message URL")
        if m.group("user"):
            try:
                named = unquote_to_bytes(m.group("user")).decode("utf-8")
            except UnicodeDecodeError:
                raise BadURL("user name is not UTF-8")
            if user is None or named.lower() != user.lower():
                raise BadURL("URL of another user")
        url = m.group("path")
    if url.startswith(b"/"):
        relative = False
        rest = url[1:]
    elif url[:5].upper() == b";UID=":
        relative = True
        rest = url
    else:
        raise BadURL("not an absolute path or a ;UID= reference")
    upper = rest.upper()
    if b";URLAUTH=" in upper or b";EXPIRE=" in upper:
        raise BadURL("URLAUTH is not supported")
    m = _PATH.match(rest)
    if m is None:
        raise BadURL("not an IMAP message URL")
    mailbox = None
    if not relative:
        raw = m.group("mailbox")
        if not raw:
            raise BadURL("no mailbox")
        try:
            mailbox = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadURL("mailbox name is not UTF-8")
        if "\x00" in mailbox:
            raise BadURL("mailbox name has a NUL")
    elif m.group("mailbox") or m.group("validity"):
        raise BadURL("not an IMAP message URL")
    validity = _number(m.group("validity"), "UIDVALIDITY") if m.group("validity") else None
    uid = _number(m.group("uid"), "UID")
    section = None
    if m.group("section") is not None:
        text = unquote_to_bytes(m.group("section"))
        if not text:
            raise BadURL("empty SECTION")
        try:
            section = parseUrlSection(text)
        except ParseError as e:
            raise BadURL("bad SECTION: %s" % e)
    partial = None
    if m.group("offset") is not None:
        offset = _number(m.group("offset"), "PARTIAL offset")
        length = _number(m.group("length"), "PARTIAL length") if m.group("length") else None
        partial = (offset, length)
    return MessageURL(mailbox, validity, uid, section, partial)


def responseText(url: bytes) -> bytes:
    """
    ``url`` as it may stand in ``[BADURL url]`` (RFC 4469 s5 url-resp-text:
    no NUL, CR, LF or "]"): those, spaces and 8-bit bytes percent-encoded
    (the parser refused them already; this is the second line of defence).
    """
    out = bytearray()
    for c in url[:1024]:
        if c <= 0x20 or c >= 0x7F or c == 0x5D:
            out += b"%%%02X" % c
        else:
            out.append(c)
    return bytes(out) or b"/"
