"""
Reading message bodies of the PostgreSQL store fast: a bounded cache of
recently read small bodies, and batch reads ahead of use.

What a body read cost before (one FETCH BODY[] or SEARCH TEXT over many
messages): a worker-thread round trip, a transaction (BEGIN, SELECT,
COMMIT) and a text-format (hex) bytea per message.  Now:

* :class:`BodyCache`: one per store (process), bodies up to
  :data:`~mailnet.store.postgres.sql.IN_MEMORY` bytes keyed by their
  SHA-256, least recently used dropped past ``[postgres] body_cache_bytes``.
  A body's bytes never change under its hash, so an entry cannot go stale;
  a cached body of a message expunged by another node meanwhile is served
  as a Maildir file that is still open would be (IMAP allows it: the
  session has not been told of the expunge yet).  Touched on the reactor
  thread only.
* :class:`FolderReader`: one per open folder.  ``prefetch(uids)`` (the
  optional :meth:`~mailnet.store.interfaces.IFolder.prefetch` hint: IMAP
  FETCH, SEARCH and THREAD, the list and thread indexes say which
  messages they open next) reads the small bodies among them that are not
  cached, ``[postgres] read_ahead`` messages (and at most
  :data:`BATCH_BYTES`) per query, one worker round trip each, into the
  cache (at most half the cache per hint); an ``open`` of a message whose
  batch is on its way waits for the batch.  A message's body hash is learned with its
  bytes (``hashes``), so a second open is a dictionary look-up on the
  reactor thread, no thread hop.
* Bodies over ``IN_MEMORY`` are never batched or cached: each open reads
  one into an unlinked temporary file chunk by chunk, as before.

A batch that fails (the database is down) is forgotten: the opens that
waited for it read their message alone, and get the store's temporary
error if that fails too.
"""

from __future__ import annotations

import collections
import io

from twisted.internet import defer
from twisted.logger import Logger

from mailnet.store.postgres import sql

log = Logger()

# One batch query reads at most this many bytes of bodies (a few of them
# in memory at once per folder: the protocols consume them in order).
BATCH_BYTES = 4 * 1024 * 1024


class BodyCache:
    """
    Small bodies by SHA-256, at most ``maxBytes`` in all (least recently
    used dropped first); bodies over ``maxItem`` bytes are not kept.
    ``maxBytes = 0`` keeps nothing.
    """

    def __init__(self, maxBytes, maxItem=sql.IN_MEMORY):
        self.maxBytes = max(0, int(maxBytes))
        self.maxItem = min(maxItem, self.maxBytes)
        self.size = 0
        self._items = collections.OrderedDict()  # hash -> bytes, oldest first
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._items)

    def get(self, h):
        data = self._items.get(h)
        if data is None:
            self.misses += 1
            return None
        self._items.move_to_end(h)
        self.hits += 1
        return data

    def put(self, h, data):
        if len(data) > self.maxItem:
            return
        items = self._items
        old = items.pop(h, None)
        if old is not None:
            self.size -= len(old)
        items[h] = data
        self.size += len(data)
        while self.size > self.maxBytes:
            _, dropped = items.popitem(last=False)
            self.size -= len(dropped)

    def clear(self):
        self._items.clear()
        self.size = 0


class FolderReader:
    """
    The body reads of one open folder (see the module docstring).

    @param db: the store's :class:`~mailnet.store.postgres.db.Database`.
    @param cache: the store's :class:`BodyCache`.
    @param folderId: the folder's row id.
    @param readAhead: messages per batch query; 0 = no batches (each open
        is one read, still cached).
    """

    def __init__(self, db, cache, folderId, readAhead):
        self.db = db
        self.cache = cache
        self.folderId = folderId
        self.readAhead = readAhead if cache.maxBytes else 0
        self.hashes = {}  # uid -> body hash, learned from reads (small bodies only)
        self.coming = {}  # uid -> the _Batch reading it

    def forget(self, uids):
        """Messages expunged: their hashes are not needed any more (the cache keeps the bytes a while)."""
        for uid in uids:
            self.hashes.pop(uid, None)

    def cached(self, uid):
        h = self.hashes.get(uid)
        return None if h is None else self.cache.get(h)

    def open(self, uid, size):
        """Deferred: the message's bytes as a file (:meth:`IFolder.openMessage`)."""
        if size <= self.cache.maxItem:
            data = self.cached(uid)
            if data is not None:
                return defer.succeed(io.BytesIO(data))
            batch = self.coming.get(uid)
            if batch is not None:
                d = defer.Deferred()
                batch.waiters.append((uid, size, d))
                return d
        return self._readOne(uid, size)

    def _readOne(self, uid, size):
        d = self.db.read(sql.readOne, self.folderId, uid, size, self.db.objects)

        def got(found):
            h, f = found
            if type(f) is io.BytesIO:
                data = f.getvalue()
                if len(data) <= self.cache.maxItem:
                    self.hashes[uid] = h
                    self.cache.put(h, data)
            return f

        return d.addCallback(got)

    def prefetch(self, infos):
        """
        Read ahead the small bodies of ``infos`` (MessageInfo, in the order
        they will be opened) not cached and not on their way, in batches.
        """
        if not self.readAhead:
            return
        todo = []
        total = 0
        # What one hint reads stays under half the cache (beyond, what was
        # read first would be dropped before its open came).
        budget = self.cache.maxBytes // 2
        for info in infos:
            uid = info.uid
            if info.size > self.cache.maxItem or uid in self.coming or self.cached(uid) is not None:
                continue
            budget -= info.size
            if budget < 0:
                break
            todo.append(uid)
            total += info.size
            if len(todo) >= self.readAhead or total >= BATCH_BYTES:
                self._start(todo)
                todo, total = [], 0
        if todo:
            self._start(todo)

    def _start(self, uids):
        batch = _Batch()
        for uid in uids:
            self.coming[uid] = batch
        d = self.db.read(sql.readBodies, self.folderId, uids, self.db.objects)
        d.addCallbacks(self._arrived, self._failed, callbackArgs=(uids, batch), errbackArgs=(uids, batch))

    def _done(self, uids, batch):
        for uid in uids:
            if self.coming.get(uid) is batch:
                del self.coming[uid]

    def _arrived(self, found, uids, batch):
        self._done(uids, batch)
        for uid, h, data in found:
            self.hashes[uid] = h
            self.cache.put(h, data)
        got = {uid: data for uid, _, data in found}
        for uid, size, d in batch.waiters:
            data = got.get(uid)
            if data is not None:
                d.callback(io.BytesIO(data))
            else:
                # Gone meanwhile, or not a small body after all: read it alone (that says which).
                self._readOne(uid, size).chainDeferred(d)

    def _failed(self, failure, uids, batch):
        self._done(uids, batch)
        log.warn("postgres: a batch read of {n} bodies failed ({e}); reading them one by one",
                 n=len(uids), e=failure.getErrorMessage())
        for uid, size, d in batch.waiters:
            self._readOne(uid, size).chainDeferred(d)


class _Batch:
    __slots__ = ("waiters",)

    def __init__(self):
        self.waiters = []  # (uid, size, Deferred) of opens waiting for it
