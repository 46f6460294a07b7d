"""
SORT (RFC 5256) and SORT=DISPLAY (RFC 5957): the sort keys of a message
and the ordering, without I/O.

A :class:`SortRecord` holds every header-derived key of one message, made
once from its header (:func:`recordFromHeader`) and kept in a
:class:`SortCache` shared by all sessions, so that a second SORT of an
unchanged folder, by any criteria, opens no file.  ARRIVAL and SIZE come
from the index (MessageInfo) and need no record.

Strings are compared with the i;unicode-casemap collation (RFC 5051, the
RFC 5255 I18NLEVEL=1 default that RFC 5256 s7 requires): :func:`casemap`
prepares a string once, and prepared strings compare as Python strings
(code point order, which is the octet order of their UTF-8).
"""

from __future__ import annotations

import collections
import re
import unicodedata

from mailnet.mail.headers import decodeWords, parseAddresses
from mailnet.mail.headers import headerFields as scanFields
from mailnet.mail.mime import MAX_HEADER
from mailnet.mail.threading import dateSeconds, subjectBase

# RFC 5256 s3 sort-key, RFC 5957 s3 (SORT=DISPLAY).
KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
# Keys that need the message header (the others are index data).
HEADER_KEYS = frozenset(("CC", "DATE", "FROM", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"))

# Records kept by a SortCache (all folders, all users): about 300-500
# bytes each, so the default holds 100,000 messages in some 40 MB.
MAX_RECORDS = 100_000
# Orders kept (SortCache.order), counted in messages: two lists of ints,
# some 20 MB at most.
MAX_ORDERS = 400_000


# i;unicode-casemap (RFC 5051 s2)


class _Titlecase(dict):
    """str.translate table: each code point's simple titlecase mapping (RFC 5051 s2 step 2)."""

    def __missing__(self, cp):
        c = chr(cp)
        t = c.title()
        # Python applies the full mappings of SpecialCasing.txt ("ß" -> "Ss");
        # RFC 5051 wants the simple one of UnicodeData.txt, which for every
        # such character is the character itself.
        value = t if len(t) == 1 else c
        if len(self) < 20000:
            self[cp] = value
        return value


_TITLE = _Titlecase()


def casemap(text: str) -> str:
    """
    The i;unicode-casemap form of ``text`` (RFC 5051 s2): each character
    to its titlecase, then the whole decomposed with NFKD.  Two strings
    compare (equal, less) as their forms do.  (For ASCII that is just
    upper case.)  NFKD of the whole string also puts combining marks in
    canonical order, which RFC 5051's character-by-character decomposition
    does not; that only matters for strings whose marks are out of order.
    """
    if text.isascii():
        return text.upper()
    return unicodedata.normalize("NFKD", text.translate(_TITLE))


# Base subject (RFC 5256 s2.1): mailnet.mail.threading.subjectBase, shared
# with THREAD and the store's thread ids.


# RFC 5256 s2.2 "sent date" (None when the Date field does not parse).
sentDate = dateSeconds


def baseSubject(subject: str) -> str:
    """The base subject of a Subject field value (RFC 5256 s2.1), not yet case-mapped."""
    return subjectBase(subject)[0]


# Header fields

_FIELD_NAMES = (b"date", b"subject", b"from", b"to", b"cc")
_INDEX = {name: index for index, name in enumerate(_FIELD_NAMES)}
_FOLD = re.compile(rb"\r?\n")


def headerFields(data: bytes, limit=MAX_HEADER):
    """
    [Date, Subject, From, To, Cc]: the first value of each (unfolded str,
    or None) in the header block at the start of ``data`` (which may hold
    the whole message), looking at no more than ``limit`` bytes
    (:func:`mailnet.mail.headers.headerFields` finds them).
    """
    out = [None] * 5
    for name, value in scanFields(data, _FIELD_NAMES, limit).items():
        if b"\n" in value:
            value = _FOLD.sub(b"", value)
        out[_INDEX[name]] = value.strip().decode("utf-8", "replace")
    return out


# The usual first address: an addr-spec alone, or after a plain or quoted
# name.  Anything else (comments, groups, dots or specials in the name,
# quoted local parts) goes to mailnet.mail.headers.parseAddresses.
_SIMPLE_ADDRESS = re.compile(r'\s*(?:"([^"\\]*)"|([^"<>()\[\]\\.,;:@]*?))\s*<([^\s<>"()\[\]\\,;:@]+)@([^\s<>"()\[\]\\,;:@]+)>\s*(?:,|$)'
                             r'|\s*([^\s<>"()\[\]\\,;:@]+)@([^\s<>"()\[\]\\,;:@]+)\s*(?:,|$)')


def _firstAddress(value):
    """(display name, mailbox, host) of the first address in a From/To/Cc value, or None."""
    if not value:
        return None
    m = _SIMPLE_ADDRESS.match(value)
    if m is not None:
        quoted, plain, local, host, bareLocal, bareHost = m.groups()
        if local is None:
            return None, bareLocal, bareHost
        name = quoted if quoted is not None else " ".join(plain.split())
        return name or None, local, host
    try:
        items = None
        if len(value) > 4096:
            # A long list (a 300 KB To: took half a second whole): the first
            # 4 KB give the same first address when they hold a second one
            # (the tokenizer reads left to right).
            items = parseAddresses(value[:4096])
            if len(items) < 2:
                items = None
        if items is None:
            items = parseAddresses(value)
    except (ValueError, IndexError):
        return None
    if not items:
        return None
    first = items[0]
    if len(first) == 3:
        # A group: its first ENVELOPE address is the group start, whose
        # addr-mailbox is the group's name (RFC 3501 s7.4.2).
        return None, first[1], None
    return first[0], first[2], first[3]


def _mailboxKey(address):
    """RFC 5256 s3: the addr-mailbox (local part) of the first address."""
    if address is None or not address[1]:
        return ""
    return casemap(address[1])


def _displayKey(address):
    """
    RFC 5957 s3: the display name of the first address, RFC 2047 words
    decoded, or when it has none its addr-mailbox "@" addr-host.
    """
    if address is None:
        return ""
    name, mailbox, host = address
    if name:
        if "=?" in name:
            name = decodeWords(name)
        name = name.strip()
    if name:
        return casemap(name)
    if mailbox and host:
        return casemap(mailbox + "@" + host)
    return casemap(mailbox or "")


class SortRecord:
    """
    The header-derived sort keys of one message (strings case-mapped;
    ``date`` None when unknown).  A record made from a header
    (:func:`recordFromHeader`) has its date at once and the string keys
    only when asked for (:meth:`complete`): a first SORT by DATE does not
    pay for base subjects and addresses.  A key not yet made is None.
    """

    __slots__ = ("date", "subject", "from_", "to", "cc", "displayFrom", "displayTo", "_raw", "size")

    def __init__(self, date=None, subject="", from_="", to="", cc="", displayFrom="", displayTo="", raw=None):
        self.date = date
        self.subject = subject
        self.from_ = from_
        self.to = to
        self.cc = cc
        self.displayFrom = displayFrom
        self.displayTo = displayTo
        self._raw = raw  # (Subject, From, To, Cc) field values while keys are still to be made
        # Characters held, about (fixed when made, for the cache's accounting).
        if raw is not None:
            self.size = 2 * sum(len(v) for v in raw if v)
        else:
            self.size = sum(len(v) for v in (subject, from_, to, cc, displayFrom, displayTo) if v)

    def has(self, keys):
        """Whether every key of ``keys`` (sort key names) is made."""
        if self._raw is None:
            return True
        for key in keys:
            attribute = _ATTRIBUTES.get(key)
            if attribute is not None and getattr(self, attribute) is None:
                return False
        return True

    def complete(self, keys):
        """
        Make the keys of ``keys`` not made yet.  Safe to run in a worker
        thread while another thread reads made keys: a slot only goes
        from None to its value.
        """
        raw = self._raw
        if raw is None:
            return
        subject, frm, to, cc = raw
        if "SUBJECT" in keys and self.subject is None:
            self.subject = casemap(baseSubject(subject)) if subject else ""
        if ("FROM" in keys or "DISPLAYFROM" in keys) and self.displayFrom is None:
            address = _firstAddress(frm)
            self.from_ = _mailboxKey(address)
            self.displayFrom = _displayKey(address)
        if ("TO" in keys or "DISPLAYTO" in keys) and self.displayTo is None:
            address = _firstAddress(to)
            self.to = _mailboxKey(address)
            self.displayTo = _displayKey(address)
        if "CC" in keys and self.cc is None:
            self.cc = _mailboxKey(_firstAddress(cc))
        if None not in (self.subject, self.displayFrom, self.displayTo, self.cc):
            self._raw = None


EMPTY = SortRecord()


def recordFromHeader(data: bytes, internalDate=None, keys=HEADER_KEYS) -> SortRecord:
    """
    The sort record of the message whose header starts ``data``, with
    ``keys`` made (the others on demand); the sent date is
    ``internalDate`` when the Date field is missing or cannot be parsed
    (RFC 5256 s2.2).
    """
    date, subject, frm, to, cc = headerFields(data)
    date = dateSeconds(date)
    record = SortRecord(internalDate if date is None else date, None, None, None, None, None, None,
                        (subject, frm, to, cc))
    record.complete(keys)
    return record


# Ordering

def _keys(key, infos, records):
    """The values of sort key ``key`` for each message, in order."""
    if key == "ARRIVAL":
        return [info.internalDate for info in infos]
    if key == "SIZE":
        return [info.size for info in infos]
    if key == "DATE":
        # RFC 5256 s2.2: a missing or unparsable Date is the INTERNALDATE
        # (already in a record made with it; not in one made without).
        return [info.internalDate if r.date is None else r.date for info, r in zip(infos, records)]
    return [getattr(r, _ATTRIBUTES[key]) for r in records]


_ATTRIBUTES = {"SUBJECT": "subject", "FROM": "from_", "TO": "to", "CC": "cc", "DISPLAYFROM": "displayFrom",
               "DISPLAYTO": "displayTo"}


def effective(criteria):
    """
    ``criteria`` without the keys already used (they cannot order what an
    earlier use left tied): at most nine, however long the client's list.
    """
    seen = set()
    out = []
    for key, reverse in criteria:
        if key not in seen:
            seen.add(key)
            out.append((key, reverse))
    return tuple(out)


def order(infos, records, criteria):
    """
    The positions of the messages (``infos``: MessageInfo, ``records``:
    SortRecord, both in ascending sequence order) in the order
    ``criteria`` ([(key, reverse)]) give.  Python's sort is stable, so
    sorting by the last criterion first and the first one last gives the
    RFC 5256 s3 order, and messages equal under every criterion stay in
    sequence-number order (also under REVERSE, which reverses one key's
    comparison, not the tie-break).  Positions are sorted with the key
    values' list as key function (a C call per message, not a lambda).
    """
    positions = list(range(len(infos)))
    for key, reverse in reversed(effective(criteria)):
        positions.sort(key=_keys(key, infos, records).__getitem__, reverse=reverse)
    return positions


def orderedSet(numbers) -> bytes:
    """
    An ESORT ALL result (RFC 5267 s3.1): the numbers in their sort order
    as a sequence-set; only runs that go up by one are written as ranges
    (``4:6`` is 4, 5, 6), since order matters here.
    """
    out = []
    i = 0
    n = len(numbers)
    while i < n:
        j = i
        while j + 1 < n and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(b"%d" % numbers[i] if i == j else b"%d:%d" % (numbers[i], numbers[j]))
        i = j + 1
    return b",".join(out)


# The cache


def _weight(record):
    """A record's share of SortCache.maxRecords: 1, plus 1 per 512 characters it holds (hostile subjects)."""
    return 1 + record.size // 512


class SortCache:
    """
    Sort records per folder, shared by every session: key (user, folder,
    UIDVALIDITY) -> {uid: SortRecord}.  A message never changes under its
    UID, so a record stays right for as long as the UID lives.  Bounded by
    ``maxRecords`` in all (a record with long keys counts for several, so
    that messages with 200 KB subjects cannot fill memory); the folder used
    least recently goes first.
    """

    def __init__(self, maxRecords=MAX_RECORDS, maxOrders=MAX_ORDERS):
        self.maxRecords = maxRecords
        self.count = 0
        self._folders = collections.OrderedDict()
        # The last orders computed: (folder key, criteria) -> (uids, positions).
        self.maxOrders = maxOrders
        self._orders = collections.OrderedDict()
        self._orderCount = 0

    def order(self, key, criteria, uids):
        """
        The positions an earlier SORT of folder ``key`` by ``criteria``
        found for exactly these ``uids`` (in sequence order), or None.  The
        order is a function of the messages alone (a message never
        changes under its UID), so a webmail that sorts an unchanged folder
        again gets the answer without a single comparison.
        """
        item = self._orders.get((key, criteria))
        if item is None or item[0] != uids:
            return None
        self._orders.move_to_end((key, criteria))
        return item[1]

    def keepOrder(self, key, criteria, uids, positions):
        """Remember an order for :meth:`order`; bounded by ``maxOrders`` UIDs in all."""
        if len(uids) > self.maxOrders:
            return
        old = self._orders.pop((key, criteria), None)
        if old is not None:
            self._orderCount -= len(old[0])
        self._orders[(key, criteria)] = (uids, positions)
        self._orderCount += len(uids)
        while self._orderCount > self.maxOrders:
            _, (oldUids, _) = self._orders.popitem(last=False)
            self._orderCount -= len(oldUids)

    def folder(self, key):
        """The {uid: record} dict of a folder (made empty if new); it becomes the most recently used."""
        records = self._folders.get(key)
        if records is None:
            records = self._folders[key] = {}
        else:
            self._folders.move_to_end(key)
        return records

    def store(self, key, found):
        """Keep ``found`` ({uid: record}) for folder ``key``, within the bound."""
        records = self.folder(key)
        weight = sum(map(_weight, found.values()))
        while self.count + weight > self.maxRecords and len(self._folders) > 1:
            oldKey, old = next(iter(self._folders.items()))
            if oldKey == key:
                break
            del self._folders[oldKey]
            self.count -= sum(map(_weight, old.values()))
        for uid, record in found.items():
            w = _weight(record)
            if self.count + w > self.maxRecords:
                continue
            if uid not in records:
                records[uid] = record
                self.count += w

    def prune(self, key, live):
        """Forget the records of folder ``key`` whose UIDs are not in ``live`` (a set): expunged messages."""
        records = self._folders.get(key)
        if records is None:
            return
        gone = [uid for uid in records if uid not in live]
        for uid in gone:
            self.count -= _weight(records.pop(uid))

    def __len__(self):
        return self.count
