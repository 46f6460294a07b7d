"""The reactor side of one open folder: its mirror of the index."""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailnet.store.base import SharedIndex, flagChanges
from mailnet.store.interfaces import NoSuchMessage, StoreError
from mailnet.store.maildir import tuning
from mailnet.store.maildir.delivery import appendMessage
from mailnet.store.maildir.names import emailIdOf, messageGuid

log = Logger()


class SerialQueue:
    """Runs operations (functions returning Deferreds) one at a time, in order."""

    def __init__(self):
        self._pending = []
        self._busy = False

    @property
    def busy(self):
        """An operation is running."""
        return self._busy

    def run(self, start, *args):
        d = defer.Deferred()
        self._pending.append((start, args, d))
        if not self._busy:
            self._next()
        return d

    def _next(self):
        while self._pending and not self._busy:
            start, args, d = self._pending.pop(0)
            self._busy = True
            result = defer.maybeDeferred(start, *args)
            result.addBoth(self._done, d)

    def _done(self, result, d):
        self._busy = False
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)
        self._next()


class FolderIndex(SharedIndex):
    """The reactor-side mirror of one open folder, shared by its handles."""

    def __init__(self, store, disk, name, snap):
        super().__init__()
        self.store = store
        self.disk = disk
        self.name = name
        self.deleted = False
        self.seq = snap["seq"]
        self.infos = {i.uid: i for i in snap["infos"]}
        self.uidValidity = snap["uidValidity"]
        self.mailboxId = snap["mailboxId"]
        self.uidNext = snap["uidNext"]
        self.highestModSeq = snap["highest"]
        self.floor = snap["floor"]
        self.expunged = snap["expunged"]
        self.firstRecentUid = snap["firstRecent"]
        self._recentQueued = False
        self._unsorted = False
        self._ids = {}  # uid -> email id, as computed (a UID's file name is fixed)
        self._waiting = {}
        self._waiters = []  # (seq, Deferred)
        self._refreshJoining = None  # Deferreds waiting on a queued refresh that has not started

    # Reading

    def messages(self):
        if self._unsorted:
            self.infos = dict(sorted(self.infos.items()))
            self._unsorted = False
        return list(self.infos.values())

    def get(self, uid):
        return self.infos.get(uid)

    def emailIds(self, uids):
        # The thread side's names (dict reads are atomic); a message that a
        # worker is moving away right now may be left out.
        full = self.disk.full
        if full is None:
            return {}
        where, ext, infos, known = full.where, full.ext, self.infos, self._ids
        out = {}
        for uid in uids:
            if uid not in infos:
                continue
            emailId = known.get(uid)
            if emailId is None:
                rel = where.get(uid)
                if rel is None:
                    continue
                emailId = known[uid] = emailIdOf(messageGuid(rel[4:].partition(":")[0], ext.get(uid, ())))
            out[uid] = emailId
        return out

    def threadIds(self, uids):
        # The account's thread index (mailnet/store/threads.py): INBOX is the
        # account's directory, other folders are ".Name" in it.
        path = self.disk.path
        if os.path.basename(path).startswith("."):
            path = os.path.dirname(path)
        return self.store.threadsAt(path).threadIds(self, uids)

    def expungedSince(self, modseq):
        if modseq < self.floor:
            return None
        return sorted(uid for m, uid in self.expunged if m > modseq)

    # \Recent (mailnet-recent, see recent.py)

    def saveRecent(self):
        # Through the folder's queue, so that a later load reads what we
        # wrote; one write waiting at a time, of the value current when it runs.
        if self._recentQueued or self.deleted:
            return
        self._recentQueued = True

        def write():
            self._recentQueued = False
            if self.deleted or self.disk.index is not self:
                return None
            return self.store.run(self.disk.saveFirstRecent, self.uidValidity, self.firstRecentUid)

        d = self.disk.queue.run(write)
        # (The error's text, not str(): an OSError's names the file's path.)
        d.addErrback(lambda f: log.warn("maildir: saving {file} of {where} failed: {e}", file="mailnet-recent",
                                        where=self.disk.label(),
                                        e=getattr(f.value, "strerror", None) or type(f.value).__name__))

    # Applying deltas (in sequence order)

    def applyDelta(self, delta):
        if delta is None or delta.seq <= self.seq:
            return
        self._waiting[delta.seq] = delta
        while self.seq + 1 in self._waiting:
            d = self._waiting.pop(self.seq + 1)
            self.seq = d.seq
            self._apply(d)
        if self._waiters:
            ready = [w for w in self._waiters if w[0] <= self.seq]
            self._waiters = [w for w in self._waiters if w[0] > self.seq]
            for _, d in ready:
                d.callback(None)

    def whenApplied(self, delta):
        if delta is None or delta.seq <= self.seq:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append((delta.seq, d))
        return d

    def _apply(self, delta):
        if delta.reset:
            gone = sorted(self.infos)
            self.infos = {}
            self._ids = {}
            # New UIDs (a new UIDVALIDITY): every message is recent again.
            self.firstRecentUid = 1
            self.notify("messagesExpunged", gone)
        self.uidValidity = delta.uidValidity
        self.mailboxId = delta.mailboxId or self.mailboxId
        self.uidNext = max(self.uidNext, delta.uidNext) if not delta.reset else delta.uidNext
        self.highestModSeq = max(self.highestModSeq, delta.highest)
        self.floor = max(self.floor, delta.floor)
        added, changed = [], []
        last = next(reversed(self.infos)) if self.infos else 0
        for info in delta.added:
            if info.uid in self.infos:
                if self.infos[info.uid] != info:
                    self.infos[info.uid] = info
                    changed.append(info)
                continue
            if info.uid < last:
                self._unsorted = True
            last = max(last, info.uid)
            self.infos[info.uid] = info
            added.append(info)
        for info in delta.changed:
            if info.uid in self.infos:
                self.infos[info.uid] = info
                changed.append(info)
        expunged = []
        for m, uid in delta.expunged:
            if self.infos.pop(uid, None) is not None:
                expunged.append(uid)
                self._ids.pop(uid, None)
            self.expunged.append((m, uid))
        if len(self.expunged) > 2 * tuning.KEEP_EXPUNGED:
            drop = self.expunged[:-tuning.KEEP_EXPUNGED]
            self.floor = max(self.floor, max(m for m, _ in drop))
            self.expunged = self.expunged[-tuning.KEEP_EXPUNGED:]
        if added:
            added.sort(key=lambda i: i.uid)
            self.notify("messagesAdded", added)
        if changed:
            self.notify("flagsChanged", changed)
        if expunged:
            self.notify("messagesExpunged", sorted(expunged))
        if added or changed or expunged or delta.reset:
            self.store.pokeJournal(self.disk.path)

    def drop(self):
        self.deleted = True
        gone = sorted(self.infos)
        self.infos = {}
        self.notify("messagesExpunged", gone)

    # Operations

    def _op(self, f, *args):
        """Run ``f`` in a thread through this folder's queue."""
        return self.disk.queue.run(self.store.run, f, *args)

    def _applied(self, delta, value):
        self.applyDelta(delta)
        d = self.whenApplied(delta)
        d.addCallback(lambda _: value)
        return d

    def refresh(self):
        # Sessions refresh before every command.  Mostly nothing changed
        # behind our back, which a few stats show: on this thread, as
        # openMessage does, since a thread-pool round trip costs far more;
        # and at once, not after the operations other sessions have queued
        # (theirs are not done yet), unless a worker has taken in changes
        # that are not here yet (Disk.settled).
        if self.disk.settled(self.seq):
            return defer.succeed(None)
        # A refresh that has not started yet looks at the disk later than
        # any caller asking now, so callers join it instead of queueing one
        # more each.
        joining = self._refreshJoining
        if joining is not None:
            d = defer.Deferred()
            joining.append(d)
            return d
        joining = self._refreshJoining = []

        def start():
            if self._refreshJoining is joining:
                self._refreshJoining = None
            # In its turn the deltas of the operations before it are in:
            # the stats alone tell whether a worker needs to look.
            if self.disk.unchanged():
                return None
            return self.store.run(self.disk.opRefresh)

        def tell(result):
            for waiter in joining:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(None)
            return result

        d = self.disk.queue.run(start)
        d.addCallback(lambda delta: None if delta is None else self._applied(delta, None))
        d.addBoth(tell)
        return d

    def openMessage(self, uid):
        info = self.infos.get(uid)
        if info is None:
            return defer.fail(NoSuchMessage(uid))
        # Opening a file at a known name costs about 10 microseconds; a
        # round trip through the thread pool ten times that.  So open on
        # this thread, and use a worker only when the file must be looked
        # for (renamed or deleted by another program since the last sync).
        try:
            f = self.disk.openKnown(uid, info.size)
        except StoreError:
            return defer.fail()
        except OSError:
            f = None  # let the worker try (and report) it
        if f is not None:
            return defer.succeed(f)
        return self.store.run(self.disk.openMessage, uid, info.size)

    def append(self, source, flags, internalDate):
        return appendMessage(self.store, self.name, self.disk.path, source, flags, internalDate)

    def setFlags(self, uids, flags, mode, unchangedSince):
        def done(result):
            changed, failed, delta = result
            return self._applied(delta, (changed, failed))

        def start():
            # A STORE that changes nothing (the flags are already so, as
            # often in a busy mailbox) needs neither the lock nor a thread:
            # with nothing changed on disk, the mirror is what the worker
            # would see (the deltas of earlier operations are in; the queue
            # keeps the order).
            if self.disk.unchanged():
                todo, failed = flagChanges(self.infos, uids, flags, mode, unchangedSince)
                if not todo:
                    return [], failed, None
            return self.store.run(self.disk.opSetFlags, uids, flags, mode, unchangedSince)

        return self.disk.queue.run(start).addCallback(done)

    def expunge(self, uids):
        def done(result):
            removed, delta = result
            return self._applied(delta, removed)

        return self._op(self.disk.opExpunge, uids).addCallback(done)

    def _transfer(self, uids, dest, move):
        def done(result):
            pairs, srcDelta, destDelta = result
            if dest is not self and destDelta is not None:
                dest.applyDelta(destDelta)
            d = self._applied(srcDelta, pairs)
            if dest is not self and destDelta is not None:
                d.addCallback(lambda v: dest.whenApplied(destDelta).addCallback(lambda _: v))
            return d

        return self._op(self.disk.opTransfer, dest.disk, uids, move).addCallback(done)

    def copyTo(self, uids, dest):
        return self._transfer(uids, dest, False)

    def moveTo(self, uids, dest):
        return self._transfer(uids, dest, True)
