"""
FETCH: index items as one line per message from fixed templates, content
items (ENVELOPE, BODY[...], BINARY, RFC 3516) built from the scanned
structure and streamed when large.

On the protocol shape (docs/design.md): the commands are generators of
effects.  Messages are opened a few ahead by ``Start``-ed ``StoreCall``s
(:class:`~mailnet.imap.commands.reading.Opener`) while the current one is
written; large structures are scanned in a worker thread (``InThread``);
output waits for the transport (``Drain``) and a long FETCH lets other
connections in (``NextTurn``).  The bytes go out as the store gives them:
a file is read in ranges, a message the store holds in memory is written
without a copy (``messageBytes``, the store contract).
"""

from __future__ import annotations

from mailnet.imap import fetch, serialize
from mailnet.imap.commands.common import ALREADY_ANSWERED, GONE, bad
from mailnet.imap.commands.fetchlines import lineMaker, objectIdItem
from mailnet.imap.commands.reading import INLINE_LITERAL, STREAM_CHUNK, Opener, readRange, seekable
from mailnet.imap.effects import InThread, NextTurn, StoreCall
from mailnet.imap.parser import FetchAtt
from mailnet.mail import mime
from mailnet.logs import Logger
from mailnet.store.interfaces import SEEN, NoSuchMessage, StoreError

log = Logger()

# A FETCH that has worked this long (seconds) without waiting for anything
# lets other sessions have the reactor before it goes on.  (A store that
# opens messages synchronously, and a client that reads as fast as we
# write, would otherwise keep it for the whole command.)
FETCH_TURN = 0.02
# FETCH waits for the transport (flow control) after this many bytes of
# responses; a large literal waits after each chunk it streams.
FETCH_DRAIN = 128 * 1024

_CONTENT_ATTS = {"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]", "BINARY[]",
                 "BINARY.SIZE"}


class FetchCommands:
    """Fetch commands of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    # {uid: thread id} of the FETCH in progress (THREADID), looked up before its responses.
    _fetchThreadIds = {}
    # {uid: email id} of the FETCH in progress (EMAILID), looked up once for the whole UID set.
    _fetchEmailIds = {}

    def cmdFetch(self, cmd):
        view = self.view
        pairs = self._resolve(cmd.seqset, cmd.uid)
        atts = _unique(cmd.atts)
        names = {a.name for a in atts}
        if cmd.uid and "UID" not in names:
            atts.insert(0, FetchAtt("UID"))
        changedSince = cmd.changedSince
        if changedSince is not None or "MODSEQ" in names:
            self._enableCondstore()
        if changedSince is not None and "MODSEQ" not in names:
            atts.append(FetchAtt("MODSEQ"))
        folder = view.folder
        get = folder.get
        if cmd.vanished:
            # RFC 7162 s3.2.6
            if not self.qresync:
                raise bad("VANISHED needs ENABLE QRESYNC")
            expunged = folder.expungedSince(changedSince)
            ranges = cmd.seqset.resolve(max(view.maxUid(), folder.uidNext - 1))
            if expunged is None:
                present = set(view.uids)
                expunged = [u for lo, hi in ranges for u in range(lo, min(hi, folder.uidNext - 1) + 1) if u not in present]
            gone = [u for u in expunged if any(lo <= u <= hi for lo, hi in ranges)]
            if gone:
                self.send(b"* VANISHED (EARLIER) " + serialize.seqset(gone) + b"\r\n")
        setSeen = not view.readOnly and any(
            (a.name in ("BODY[]", "BINARY[]") and not a.peek) or a.name in ("RFC822", "RFC822.TEXT") for a in atts)
        seenNow = set()
        if setSeen:
            unseen = []
            for _, uid in pairs:
                info = get(uid)
                if info is not None and SEEN not in info.flags:
                    unseen.append(uid)
            if unseen:
                changed, _ = yield StoreCall(folder, "setFlags", (unseen, [SEEN], "add"))
                seenNow = {i.uid for i in changed}
                if "FLAGS" not in names:
                    atts.append(FetchAtt("FLAGS"))
        self._fetchThreadIds = {}
        self._fetchEmailIds = {}
        if "EMAILID" in names:
            # RFC 8474 s5.1: from the store's index, no I/O; none from a store without ids (NIL).
            emailIds = getattr(folder, "emailIds", None)
            if emailIds is not None:
                self._fetchEmailIds = emailIds([uid for _, uid in pairs])
        if "THREADID" in names:
            # RFC 8474 s5.2: the store's thread ids (it may read headers the first time).
            if getattr(folder, "threadIds", None) is not None:
                try:
                    self._fetchThreadIds = yield StoreCall(folder, "threadIds", ([uid for _, uid in pairs],))
                except (StoreError, OSError) as e:
                    # Advisory data: answered NIL rather than failing the FETCH.
                    log.warn("thread ids unavailable: {error}",
                             error=(e.strerror if isinstance(e, OSError) else str(e))[:200])
                if self.closed:
                    return ALREADY_ANSWERED
        content = any(a.name in _CONTENT_ATTS for a in atts)
        opener = None
        if content:
            todo = [uid for _, uid in pairs
                    if (i := get(uid)) is not None and (changedSince is None or i.modseq > changedSince)]
            opener = Opener(self, folder, todo)
        try:
            result = yield from self._fetchLoop(pairs, atts, names, content, changedSince, seenNow, opener)
        finally:
            if opener is not None:
                opener.close()
        if cmd.uid and result == GONE:
            # RFC 3501 s6.4.8 (RFC 9051 s6.4.9): a UID that no longer exists
            # is ignored without an error; its EXPUNGE goes with the answer.
            return None
        return result

    def _fetchLoop(self, pairs, atts, names, content, changedSince, seenNow, opener):
        if not content:
            return (yield from self._fetchMetadata(pairs, atts, names, changedSince))
        view = self.view
        get = view.folder.get
        missing = False
        error = None
        clock = self.clock
        turnStart = clock.seconds()
        unflushed = 0
        for msn, uid in pairs:
            info = get(uid)
            if info is None:
                missing = True
                continue
            if changedSince is not None and info.modseq <= changedSince:
                continue
            try:
                f = yield from opener.next(uid)
                written = yield from self._fetchOne(f, msn, uid, info, atts, seenNow)
            except NoSuchMessage:
                missing = True
                continue
            except mime.UnknownEncoding as e:
                error = ("NO", "Unknown Content-Transfer-Encoding %s" % str(e)[:40], b"UNKNOWN-CTE")
                continue
            unflushed += written + 256  # the literals, and about a line for the rest
            if unflushed >= FETCH_DRAIN:
                # Flow control every FETCH_DRAIN bytes, not every message:
                # a round trip to the runner costs more than a small message.
                unflushed = 0
                yield from self.drainEffect()
            if clock.seconds() - max(turnStart, self._waitedAt) > FETCH_TURN:
                yield NextTurn()
                turnStart = clock.seconds()
            if self.closed:
                return ALREADY_ANSWERED
            if "FLAGS" in names or uid in seenNow:
                view.pendingFlags.pop(uid, None)
        if error:
            return error
        if missing:
            return GONE

    def _fetchMetadata(self, pairs, atts, names, changedSince):
        """FETCH of index data only (FLAGS, UID, sizes...): no I/O, one line per message."""
        view = self.view
        if "FLAGS" in names and view.pendingFlags:
            # These FETCH responses carry the current flags.
            for _, uid in pairs:
                view.pendingFlags.pop(uid, None)
        if len(pairs) > 2000:
            lookup = {m.uid: m for m in view.folder.messages()}.get
        else:
            lookup = view.folder.get
        make = lineMaker(tuple(a.name for a in atts), view.recent if view.showRecent else None, self._fetchThreadIds,
                         self._fetchEmailIds)
        missing = False
        batch = []
        append = batch.append
        count = 0
        for msn, uid in pairs:
            info = lookup(uid)
            if info is None:
                missing = True
                continue
            if changedSince is not None and info.modseq <= changedSince:
                continue
            append(make(msn, info))
            count += 1
            if count == 4096:
                self.sendLines(batch)
                batch.clear()
                count = 0
                yield from self.drainEffect()
                if self.closed:
                    return ALREADY_ANSWERED
        self.sendLines(batch)
        if missing:
            return GONE

    def _simpleItem(self, name, info):
        if name == "UID":
            return b"UID %d" % info.uid
        if name == "FLAGS":
            return b"FLAGS " + serialize.flags(self.view.flagsFor(info))
        if name == "INTERNALDATE":
            return b"INTERNALDATE " + serialize.internalDate(info.internalDate)
        if name == "RFC822.SIZE":
            return b"RFC822.SIZE %d" % info.size
        if name == "MODSEQ":
            return b"MODSEQ (%d)" % info.modseq
        if name == "SAVEDATE":
            return b"SAVEDATE NIL"
        if name == "EMAILID":
            return b"EMAILID " + objectIdItem(self._fetchEmailIds.get(info.uid))
        if name == "THREADID":
            return b"THREADID " + objectIdItem(self._fetchThreadIds.get(info.uid))
        raise AssertionError(name)

    def _structure(self, uid, f, size, full, loaded=None):
        """The scanned structure (``full``: every part, else the header); ``loaded`` is what _loadStructure gave."""
        if loaded is not None and (loaded.full or not full):
            return loaded
        key = (self.username, self.view.name, self.view.uidValidity, uid)
        cache = self.shared.structures
        entry = cache.get(key)
        if entry is not None and (entry.full or not full):
            return entry
        f.seek(0)
        settings = self.shared.settings
        entry = fetch.build(f, size, full, settings.mimeParts, settings.mimeDepth)
        cache.put(key, entry)
        return entry

    def _loadStructure(self, uid, f, size, full):
        """
        The structure, built before the response is: on the reactor thread
        while it is small work (fetch.INLINE_BUDGET), else in a worker
        thread with ENVELOPE and BODYSTRUCTURE rendered there too, so a
        message made of 10,000 parts (or an enormous header) does not keep
        other sessions waiting.
        """
        key = (self.username, self.view.name, self.view.uidValidity, uid)
        cache = self.shared.structures
        entry = cache.get(key)
        if entry is not None and (entry.full or not full):
            return entry
        settings = self.shared.settings
        f.seek(0)
        try:
            entry = fetch.build(f, size, full, settings.mimeParts, settings.mimeDepth, fetch.INLINE_BUDGET)
        except mime.OverBudget:
            f.seek(0)
            entry = yield InThread(fetch.build, (f, size, full, settings.mimeParts, settings.mimeDepth, None, True))
            if self.closed:
                raise ConnectionError("closed")
        cache.put(key, entry)
        return entry

    def _fetchOne(self, f, msn, uid, info, atts, seenNow):
        """Write one FETCH response with content items; returns bytes written (roughly)."""
        f = seekable(f, info.size)
        try:
            need = _structureNeed(atts)
            loaded = None
            if need is not None:
                loaded = yield from self._loadStructure(uid, f, info.size, need)
            pieces = [b"* %d FETCH (" % msn]
            streams = []
            first = True
            total = 0
            for a in atts:
                name = a.name
                pieces.append(b"" if first else b" ")
                first = False
                if name in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "SAVEDATE", "EMAILID", "THREADID"):
                    pieces.append(self._simpleItem(name, info))
                    continue
                if name == "ENVELOPE":
                    pieces.append(b"ENVELOPE " + self._structure(uid, f, info.size, False, loaded).envelope(
                        self.utf8 or self.rev2))
                    continue
                if name == "BODY":
                    pieces.append(b"BODY " + self._structure(uid, f, info.size, True, loaded).body())
                    continue
                if name == "BODYSTRUCTURE":
                    pieces.append(b"BODYSTRUCTURE " + self._structure(uid, f, info.size, True, loaded).bodystructure())
                    continue
                if name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                    if name == "RFC822":
                        where = ("range", 0, info.size)
                    else:
                        root = self._structure(uid, f, info.size, False, loaded).root
                        where = ("range", 0, root.bodyStart) if name == "RFC822.HEADER" else ("range", root.bodyStart, info.size)
                    pieces.append(name.encode() + b" ")
                    total += self._literal(pieces, streams, f, where, None)
                    continue
                if name == "BODY[]":
                    section = a.section
                    label = b"BODY[" + section.spec() + b"]"
                    if a.partial:
                        label += b"<%d>" % a.partial[0]
                    pieces.append(label + b" ")
                    try:
                        where = self._whereBody(uid, f, info, section, loaded)
                    except fetch.SectionError:
                        pieces.append(b"NIL")
                        continue
                    total += self._literal(pieces, streams, f, where, a.partial)
                    continue
                if name == "BINARY[]":
                    label = b"BINARY[" + a.section.spec() + b"]"
                    if a.partial:
                        label += b"<%d>" % a.partial[0]
                    pieces.append(label + b" ")
                    try:
                        root = self._structure(uid, f, info.size, bool(a.section.part), loaded).root
                        start, end, enc = fetch.binarySource(root, a.section)
                    except fetch.SectionError:
                        pieces.append(b"NIL")
                        continue
                    total += self._binaryLiteral(pieces, streams, f, uid, a.section, start, end, enc, a.partial)
                    continue
                if name == "BINARY.SIZE":
                    label = b"BINARY.SIZE[" + a.section.spec() + b"] "
                    try:
                        root = self._structure(uid, f, info.size, bool(a.section.part), loaded).root
                        start, end, enc = fetch.binarySource(root, a.section)
                    except fetch.SectionError:
                        pieces.append(label + b"0")
                        continue
                    pieces.append(label + b"%d" % self._binarySize(f, uid, a.section, start, end, enc))
                    continue
                raise AssertionError(name)
            pieces.append(b")\r\n")
            # Write, streaming the big literals.
            if not streams:
                self.sendPieces(pieces)
                return total
            position = 0
            for index, stream in streams:
                self.send(b"".join(pieces[position:index]))
                position = index
                yield from self._stream(f, *stream)
                if self.closed:
                    return total
            self.send(b"".join(pieces[position:]))
            return total
        finally:
            f.close()

    def _whereBody(self, uid, f, info, section, loaded=None):
        if not section.part and section.text is None:
            return ("range", 0, info.size)
        full = bool(section.part)
        root = self._structure(uid, f, info.size, full, loaded).root
        return fetch.resolve(root, section)

    def _literal(self, pieces, streams, f, where, partial):
        if where[0] == "bytes":
            data = where[1]
            if partial:
                data = data[partial[0]:partial[0] + partial[1]]
            pieces.append(b"{%d}\r\n" % len(data))
            pieces.append(_literalSafe(data))
            return len(data)
        _, start, end = where
        if partial:
            start = min(end, start + partial[0])
            end = min(end, start + partial[1])
        length = end - start
        pieces.append(b"{%d}\r\n" % length)
        if length <= INLINE_LITERAL:
            data = readRange(f, start, length)
            if len(data) < length:
                log.error("imap: {user}: message shorter than its index says; padded", user=self.username)
                data += b" " * (length - len(data))
            pieces.append(_literalSafe(data))
        else:
            pieces.append(b"")
            streams.append((len(pieces) - 1, (start, length, None)))
        return length

    def _binaryInfo(self, f, uid, section, start, end, enc):
        """(decoded size, contains NUL) of a BINARY section; one decoding pass, cached."""
        key = (self.username, self.view.name, self.view.uidValidity, uid, "binary", section)
        cached = self.shared.structures.get(key)
        if cached is not None:
            return cached
        size = 0
        nul = False
        for chunk in mime.decodedChunks(f, start, end, enc):
            size += len(chunk)
            nul = nul or b"\x00" in chunk
        info = (size, nul)
        self.shared.structures.put(key, info)
        return info

    def _binarySize(self, f, uid, section, start, end, enc):
        if enc in ("7bit", "8bit", "binary"):
            return end - start
        return self._binaryInfo(f, uid, section, start, end, enc)[0]

    def _binaryLiteral(self, pieces, streams, f, uid, section, start, end, enc, partial):
        # RFC 3516 s4.2: literal8 ("~{n}") when the data has NUL, else a literal.
        if end - start <= INLINE_LITERAL:
            data = b"".join(mime.decodedChunks(f, start, end, enc))
            if partial:
                data = data[partial[0]:partial[0] + partial[1]]
            pieces.append((b"~{%d}\r\n" if b"\x00" in data else b"{%d}\r\n") % len(data))
            pieces.append(data)
            return len(data)
        total, nul = self._binaryInfo(f, uid, section, start, end, enc)
        skip = 0
        length = total
        if partial:
            skip = min(total, partial[0])
            length = min(total - skip, partial[1])
        pieces.append((b"~{%d}\r\n" if nul else b"{%d}\r\n") % length)
        pieces.append(b"")
        streams.append((len(pieces) - 1, (start, end - start, (enc, skip, length))))
        return length

    def _stream(self, f, start, length, decoding):
        """Write ``length`` bytes of the message (decoded if asked), waiting for the transport."""
        if decoding is None:
            position = start
            left = length
            while left > 0 and not self.closed:
                chunk = readRange(f, position, min(STREAM_CHUNK, left))
                position += len(chunk)
                if not chunk:
                    log.error("imap: {user}: message shorter than its index says; padded", user=self.username)
                    chunk = b" " * left
                left -= len(chunk)
                self.send(_literalSafe(chunk))
                yield from self.drainEffect()
            return
        enc, skip, want = decoding
        sent = 0
        for chunk in mime.decodedChunks(f, start, start + length, enc):
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk = chunk[skip:]
                skip = 0
            chunk = chunk[:want - sent]
            if not chunk:
                break
            sent += len(chunk)
            self.send(chunk)
            yield from self.drainEffect()
            if self.closed or sent >= want:
                break
        if sent < want and not self.closed:
            self.send(b" " * (want - sent))


def _unique(atts):
    """
    The FETCH items with repeats dropped (``UID UID FLAGS``, ``BODY[1]
    BODY.PEEK[1]``): each is answered once, in the place of its first
    mention, as Dovecot does for UID and FLAGS.  An item named with and
    without .PEEK is one that sets \\Seen.
    """
    out = []
    seen = {}
    for a in atts:
        key = (a.name, a.section.spec() if a.section is not None else None, a.partial)
        index = seen.get(key)
        if index is None:
            seen[key] = len(out)
            out.append(a)
        elif out[index].peek and not a.peek:
            out[index] = FetchAtt(a.name, a.section, False, a.partial)
    return out


def _literalSafe(data):
    """
    Message bytes for an ordinary literal: RFC 3501 s9 allows no NUL in
    one, so a NUL (in a message stored by other means than a binary
    APPEND, which base64-encodes such parts) goes out as 0x80, the same
    size, as Dovecot sends it.  BINARY fetches send the NULs in a literal8.
    """
    if b"\x00" in data:
        return data.replace(b"\x00", b"\x80")
    return data


def _structureNeed(atts):
    """What the FETCH items need scanned: None, False (the header), True (every part)."""
    need = None
    for a in atts:
        name = a.name
        if name in ("BODY", "BODYSTRUCTURE"):
            return True
        if name in ("BODY[]", "BINARY[]", "BINARY.SIZE"):
            section = a.section
            if section is None or (not section.part and section.text is None):
                if name == "BODY[]":
                    continue
            if section is not None and section.part:
                return True
            need = False
        elif name in ("ENVELOPE", "RFC822.HEADER", "RFC822.TEXT"):
            need = False
    return need
