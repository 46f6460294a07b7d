"""
CATENATE (RFC 4469): an APPEND message made of ``TEXT`` literals and
``URL`` parts (RFC 5092 IMAP URLs: messages and body parts of the user's
own mailboxes, see :mod:`mailnet.imap.imapurl`).

The message is built before anything is stored, part after part, into a
spooled file (memory up to 256 KB, then an anonymous temporary file): a
URL part's bytes are copied from the stored message in 64 KB pieces (in
a worker thread past 1 MB), never read whole.  The whole counts against
``APPENDLIMIT`` (``NO [TOOBIG]`` as soon as the parts so far pass it,
before the part is copied); a URL that names nothing this user can read
is ``NO [BADURL url]``.  The built message then takes APPEND's own path
(checks, binary encoding, the store's durable append).
"""

from __future__ import annotations

import tempfile

from mailnet.imap import fetch, imapurl
from mailnet.imap.commands.common import no
from mailnet.imap.commands.reading import STREAM_CHUNK, readRange, seekable
from mailnet.imap.effects import InThread, StoreCall
from mailnet.imap.parser import SPOOL_THRESHOLD
from mailnet.mail import mime
from mailnet.store.interfaces import INBOX, InvalidFolderName, NoSuchFolder, NoSuchMessage

# A URL part longer than this is copied in a worker thread.
_INLINE_COPY = 1024 * 1024


class Built:
    """
    A CATENATE message being built; once done it stands where a
    :class:`mailnet.imap.parser.Literal` does (``len``, ``binary``,
    ``open``, ``close``).
    """

    __slots__ = ("size", "binary", "_file")

    def __init__(self, binary=False):
        self.size = 0
        self.binary = binary
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_THRESHOLD, prefix="mailnet-imap-")

    def write(self, data):
        self._file.write(data)
        self.size += len(data)

    def __len__(self):
        return self.size

    def open(self):
        self._file.seek(0)
        return self._file

    def close(self):
        self._file.close()

    def __repr__(self):
        return f"<Built {self.size} bytes>"


def _copyRange(f, out, start, length):
    """Copy ``length`` bytes of ``f`` from ``start`` to ``out`` in pieces; the number copied."""
    copied = 0
    while copied < length:
        chunk = readRange(f, start + copied, min(STREAM_CHUNK, length - copied))
        if not chunk:
            break
        out.write(chunk)
        copied += len(chunk)
    return copied


def badUrl(url, why):
    return no("Cannot use URL: %s" % why, b"BADURL " + imapurl.responseText(url))


class CatenateCommands:
    """CATENATE for :meth:`MessageCommands.cmdAppend` (a mixin of :class:`mailnet.imap.session.IMAPSession`)."""

    def buildCatenated(self, m, limit, which):
        """
        (``yield from``) Build the CATENATE message ``m`` (an
        ``AppendMessage`` with ``parts``) into a :class:`Built`, set as
        ``m.message`` (so the command closes it); NO [BADURL], [TOOBIG],
        [CANNOT] on the way.
        """
        parts = m.parts
        if not self.utf8 and any(p.utf8 for p in parts):
            raise no("APPEND UTF8 needs ENABLE UTF8=ACCEPT first", b"CANNOT")
        # Sizes known before any URL is resolved (RFC 4469 s3: TOOBIG).
        texts = sum(len(p.literal) for p in parts if p.literal is not None)
        if texts > limit:
            raise no(which + "too big (limit %d bytes)" % limit, b"TOOBIG")
        built = m.message = Built(binary=any(p.literal is not None and p.literal.binary for p in parts))
        textLeft = texts  # of the TEXT parts not yet copied: they count before each URL part
        for part in parts:
            if part.literal is not None:
                textLeft -= len(part.literal)
                src = part.literal.open()
                while True:
                    chunk = src.read(STREAM_CHUNK)
                    if not chunk:
                        break
                    built.write(chunk)
                continue
            yield from self._catenateUrl(part.url, built, limit - textLeft, which, limit)
        return built

    def _catenateUrl(self, url, built, room, which, limit):
        try:
            ref = imapurl.parse(url, self.username)
        except imapurl.BadURL as e:
            raise badUrl(url, str(e))
        if ref.mailbox is None:
            # RFC 5092 s7.1: relative to the selected mailbox.
            if self.view is None:
                raise badUrl(url, "no mailbox is selected")
            folder, name, own = self.view.folder, self.view.name, False
        else:
            name = _normalName(ref.mailbox)
            try:
                folder = yield StoreCall(self.account, "openFolder", (name,))
            except (NoSuchFolder, InvalidFolderName):
                raise badUrl(url, "no such mailbox")
            own = True
        try:
            if ref.uidValidity is not None and ref.uidValidity != folder.uidValidity:
                raise badUrl(url, "UIDVALIDITY does not match")
            info = folder.get(ref.uid)
            if info is None:
                raise badUrl(url, "no such message")
            try:
                f = yield StoreCall(folder, "openMessage", (ref.uid,))
            except NoSuchMessage:
                raise badUrl(url, "no such message")
            try:
                f = seekable(f, info.size)
                where = ("range", 0, info.size)
                if ref.section is not None and (ref.section.part or ref.section.text is not None):
                    root = (yield from self._urlStructure(folder, name, ref, f, info.size)).root
                    try:
                        where = fetch.resolve(root, ref.section)
                    except fetch.SectionError as e:
                        raise badUrl(url, "no such section (%s)" % e)
                if where[0] == "bytes":
                    data = where[1]
                    if ref.partial is not None:
                        offset, length = ref.partial
                        data = data[offset:] if length is None else data[offset:offset + length]
                    start, length = None, len(data)
                else:
                    _, start, end = where
                    if ref.partial is not None:
                        offset, want = ref.partial
                        start = min(end, start + offset)
                        end = end if want is None else min(end, start + want)
                    length = end - start
                if built.size + length > room:
                    raise no(which + "too big (limit %d bytes)" % limit, b"TOOBIG")
                if start is None:
                    built.write(data)
                elif length > _INLINE_COPY:
                    copied = yield InThread(_copyRange, (f, built, start, length))
                    if copied < length:
                        raise badUrl(url, "message shorter than its index says")
                elif _copyRange(f, built, start, length) < length:
                    raise badUrl(url, "message shorter than its index says")
            finally:
                f.close()
        finally:
            if own:
                self.closeFolder(folder)

    def _urlStructure(self, folder, name, ref, f, size):
        """The full MIME structure of a URL's message (FETCH's cache; a worker thread past the inline budget)."""
        key = (self.username, name, folder.uidValidity, ref.uid)
        cache = self.shared.structures
        entry = cache.get(key)
        if entry is not None and entry.full:
            return entry
        settings = self.shared.settings
        f.seek(0)
        try:
            entry = fetch.build(f, size, True, settings.mimeParts, settings.mimeDepth, fetch.INLINE_BUDGET)
        except mime.OverBudget:
            f.seek(0)
            entry = yield InThread(fetch.build, (f, size, True, settings.mimeParts, settings.mimeDepth, None, True))
        cache.put(key, entry)
        return entry


def _normalName(name):
    """A URL's mailbox name as the store knows it (RFC 3501 s5.1: INBOX in any case)."""
    head, sep, rest = name.partition("/")
    if head.upper() == INBOX:
        return INBOX + sep + rest
    return name
