"""
THREAD (RFC 5256): the messages that match the search criteria (the
SEARCH code finds them), their headers read in worker threads, and the
tree built by :mod:`mailnet.mail.threading` (ORDEREDSUBJECT, REFERENCES).
The shape of the answer depends only on the algorithm, not on the
store's thread ids (FETCH THREADID).  A generator of effects (docs/design.md):
``StoreCall`` opens (ahead, through the Opener), ``InThread`` reads.
"""

from __future__ import annotations

from mailnet.imap import search
from mailnet.imap.commands.common import bad, no
from mailnet.imap.commands.reading import Opener, readHeaderBytes
from mailnet.imap.commands.search import checkUtf8Charset
from mailnet.imap.effects import InThread
from mailnet.mail import threading
from mailnet.store.interfaces import NoSuchMessage

THREAD_ALGORITHMS = threading.ALGORITHMS
# Headers are read and parsed this many messages per worker-thread call.
THREAD_BATCH = 64
# A header is read up to this size: the fields threading needs are near the top.
HEADER_LIMIT = 256 * 1024


class ThreadCommands:
    """THREAD of :class:`mailnet.imap.session.IMAPSession` (a mixin)."""

    def cmdThread(self, cmd):
        algorithm = cmd.algorithm
        if algorithm not in THREAD_ALGORITHMS:
            # RFC 5256 s3: an algorithm the server does not advertise is an error.
            raise bad("Unknown threading algorithm %s" % algorithm[:40])
        charset = cmd.charset
        checkUtf8Charset(self, charset, True)
        if charset not in ("UTF-8", "US-ASCII", "UTF8"):
            raise no("Charset %s is not supported" % charset[:40], b"BADCHARSET (UTF-8 US-ASCII)")
        try:
            program = search.decodeStrings(cmd.keys, "utf-8" if charset != "US-ASCII" else "ascii")
        except search.SearchError as e:
            raise no(str(e), e.code)
        if search.usesModseq(program):
            self._enableCondstore()
        results = yield from self._runSearch(program)
        items = yield from self._threadItems(results, cmd.uid)
        if len(items) > 1000:
            data = yield InThread(threading.thread, (algorithm, items))
        else:
            data = threading.thread(algorithm, items)
        if self.closed:
            raise ConnectionError("closed")
        self.send(b"* THREAD " + data + b"\r\n" if data else b"* THREAD\r\n")

    def _threadItems(self, results, byUid):
        """One :class:`threading.Item` per match (a message gone meanwhile is left out)."""
        folder = self.view.folder
        opener = Opener(self, folder, [uid for _, uid, _ in results], window=16)
        items = []
        batch = []
        try:
            for msn, uid, info in results:
                try:
                    f = yield from opener.next(uid)
                except NoSuchMessage:
                    continue
                batch.append((uid if byUid else msn, info.internalDate, f))
                if len(batch) >= THREAD_BATCH:
                    todo, batch = batch, []
                    items.extend((yield InThread(_readItems, (todo,))))
                    if self.closed:
                        raise ConnectionError("closed")
            if batch:
                todo, batch = batch, []
                items.extend((yield InThread(_readItems, (todo,))))
        finally:
            opener.close()
            for _, _, f in batch:
                f.close()
        return items


def _readItems(batch):
    """(In a worker thread.) Read each header and make its item."""
    out = []
    for number, internalDate, f in batch:
        try:
            header = readHeaderBytes(f, HEADER_LIMIT)
        except (OSError, ValueError):
            header = b""
        finally:
            f.close()
        out.append(threading.Item.fromHeader(number, header, internalDate))
    return out
