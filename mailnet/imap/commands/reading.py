"""
Reading messages for FETCH and SEARCH: open a few ahead of their use,
read byte ranges (one pread(2) for a plain file), make forward-only
readers seekable, read a header.
"""

from __future__ import annotations

import io
import os

from mailnet.effects import PENDING
from mailnet.imap.effects import Failed, StoreCall, Wait
from mailnet.mail.lines import readHeaderBlock
from mailnet.store.interfaces import messageBytes

# Literal bodies up to this size are read whole and written in one piece;
# larger ones are streamed in chunks, waiting for the transport to drain.
INLINE_LITERAL = 256 * 1024
STREAM_CHUNK = 64 * 1024


class Opener:
    """
    Open messages a few ahead of their use, in order: a store may open
    files in worker threads (Maildir: only when another program renamed the
    file since the last sync), and keeping several opens in flight hides
    that round trip (FETCH BODY[] and SEARCH TEXT over many messages).
    The opens are ``Start``-ed ``StoreCall`` effects of the session
    (mailnet.effects.Start); :meth:`next` takes one (a ``Wait`` when it has
    not come yet: with a store that opens at once, one round trip to the
    runner per window of messages).
    """

    WINDOW = 4
    # Beyond the window, the folder is told which messages come next
    # (IFolder.prefetch, a hint), this many at a time, again when half of
    # them are used: a store may read them in a batch (PostgreSQL: one
    # query for many small bodies).
    AHEAD = 64

    def __init__(self, session, folder, uids, window=WINDOW):
        self.session = session
        self.folder = folder
        self.uids = uids
        self.window = window
        self.position = 0
        self.pending = {}  # uid -> its Start
        self.told = 0 if len(uids) > 1 else len(uids)  # uids[:told] were hinted
        self._fill()

    def _hint(self):
        """Tell the folder the next AHEAD messages (a started StoreCall nobody waits for)."""
        first = max(self.told, self.position)
        self.told = min(len(self.uids), first + self.AHEAD)
        hint = self.session.startEffect(StoreCall(self.folder, "prefetch", (self.uids[first:self.told],)))
        self.session.discard((hint,))

    def _fill(self):
        uids = self.uids
        if self.told < len(uids) and self.position + self.AHEAD // 2 >= self.told:
            self._hint()
        pending = self.pending
        start = self.session.startEffect
        folder = self.folder
        while self.position < len(uids) and len(pending) < self.window:
            uid = uids[self.position]
            self.position += 1
            pending[uid] = start(StoreCall(folder, "openMessage", (uid,)))

    def next(self, uid):
        """(``yield from``) The opened message ``uid``; the store's error is raised."""
        handle = self.pending.pop(uid, None)
        if handle is None:
            handle = self.session.startEffect(StoreCall(self.folder, "openMessage", (uid,)))
        self._fill()
        outcome = handle.take()
        if outcome is PENDING:
            return (yield Wait(handle))
        if type(outcome) is Failed:
            raise outcome.error
        return outcome

    def close(self):
        """The opens not waited for: their files are closed when they come."""
        pending, self.pending = self.pending, {}
        self.session.discard(pending.values())


def readRange(f, start, length):
    """
    ``length`` bytes from ``start`` (fewer at the end of the file).  A plain
    file is read with one pread(2): no seek, one system call, so the
    reactor thread gives up the GIL once instead of twice per message.
    """
    if type(f) is io.BufferedReader and type(f.raw) is io.FileIO:
        fd = f.raw.fileno()
        data = os.pread(fd, length, start)
        while len(data) < length:
            more = os.pread(fd, length - len(data), start + len(data))
            if not more:
                break
            data += more
        return data
    if start == 0:
        # A message the store read into memory: the whole of it without a
        # copy (the store contract, interfaces.messageBytes).
        data = messageBytes(f)
        if data is not None and len(data) <= length:
            return data
    f.seek(start)
    return f.read(length)


def seekable(f, size):
    """
    A seekable file with the message.  Stores may hand out a forward-only
    reader (a Maildir file with bare LF served as CRLF); copy those to
    memory when small, to an anonymous temporary file when large.
    """
    try:
        if f.seekable():
            return f
    except (AttributeError, ValueError):
        pass
    import io
    import shutil
    import tempfile

    if size <= INLINE_LITERAL * 16:
        data = f.read()
        f.close()
        return io.BytesIO(data)
    out = tempfile.TemporaryFile(prefix="mailnet-imap-")
    shutil.copyfileobj(f, out, STREAM_CHUNK)
    f.close()
    out.seek(0)
    return out


def readHeaderBytes(f, limit=256 * 1024):
    return readHeaderBlock(f, limit)
