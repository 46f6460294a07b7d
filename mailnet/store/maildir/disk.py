"""The thread side of one folder: its index files, loading and syncing."""

from __future__ import annotations

import os
import secrets
import threading
import time

from twisted.logger import Logger

from mailnet.durable import fsyncDir
from mailnet.store.base import newUidValidity
from mailnet.store.interfaces import INBOX, NoSuchFolder
from mailnet.store.maildir import tuning
from mailnet.store.maildir.files import CorruptFile, UidList, isMailboxGuid, setAside
from mailnet.store.maildir.index import SerialQueue
from mailnet.store.maildir.keywords import Keywords
from mailnet.store.maildir.layout import folderNameOf
from mailnet.store.maildir.locks import Locked
from mailnet.store.maildir.modlog import ModLog
from mailnet.store.maildir.ops import FolderOperations
from mailnet.store.maildir.recent import readFirstRecent, writeFirstRecent
from mailnet.store.maildir.scan import DirectoryScan
from mailnet.store.maildir.state import Batch, Delta, Full, byUid, dirStamp, unsettledUntil

log = Logger()


class Disk(DirectoryScan, FolderOperations):
    """
    Thread-side state of one folder: the reader positions in its index files,
    and the full index while the folder is open in this process.

    Every method runs in a worker thread and takes :meth:`locked` (the
    in-process lock, then Dovecot's dotlock) for anything that reads or
    writes state.  ``index`` and ``queue`` belong to the reactor side.
    """

    def __init__(self, store, path):
        self.store = store
        self.lock = threading.Lock()
        self.path = path
        self.uidlist = UidList(path)
        self.modlog = ModLog(path)
        self.keywords = Keywords(path)
        self.full = None
        self.seq = 0
        # (Thread.)  A sync may have taken in changes made by others that
        # the reactor has not been given yet (see unchanged()).
        self.absorbing = False
        self.deleted = False
        self.busy = 0
        self._trustIno = None
        # (new/, cur/) stamps at which every file is in the sidecar, as far
        # as this process knows with the folder not loaded: for the change
        # journal (journal.py), to tell our own writes from another program's.
        self.blindStamps = None
        self.skipped = set()  # entries of new/ and cur/ that are not files
        self.unreadable = set()  # files we could not read (logged once)
        self.dotlock = None  # while locked
        # Set under the lock; done by Locked on the way out.
        self.rewrite = False
        self.rewriteRecords = []
        # Group commit of deliveries (see place()):
        self.placeCond = threading.Condition(threading.Lock())
        self.placeQueue = []
        self.placing = False
        # Reactor side:
        self.index = None
        self.queue = SerialQueue()

    def setPath(self, path):
        """The folder was renamed: same files, new place."""
        self.path = path
        self.uidlist.path = os.path.join(path, UidList.NAME)
        self.modlog.path = os.path.join(path, ModLog.NAME)
        self.keywords.folderPath = path
        self.keywords.path = os.path.join(path, Keywords.NAME)

    @property
    def folderName(self):
        """The folder's name (for errors that reach clients: never the path)."""
        return folderNameOf(os.path.basename(self.path)) or INBOX

    def exists(self):
        return os.path.isdir(os.path.join(self.path, "cur"))

    def locked(self):
        return Locked(self)

    def touchLock(self):
        """In long loops under the lock: keep the dotlock from looking stale."""
        if self.dotlock is not None:
            self.dotlock.touch()

    # The index files

    def newModseq(self):
        return self.modlog.allocate()

    def _ensureLogs(self):
        """
        Blind mode (folder not loaded here): bring the uidlist and sidecar
        readers up to date reading only the header and the last lines.
        Missing or broken files are recreated.
        """
        ul, ml = self.uidlist, self.modlog
        try:
            ul.readTail()
        except CorruptFile as e:
            self._setAside(ul.path, e)
            ul.reset()
        if not ul.exists and not self.rewrite:
            # No usable uidlist: a new UIDVALIDITY, written on unlock.
            ul.reset()
            ul.uidValidity = newUidValidity()
            ul.hdrNext = 1
            self.rewrite = True
            self.rewriteRecords = []
        try:
            ml.readTail()
        except CorruptFile as e:
            self._setAside(ml.path, e)
            ml.reset()
        if not ml.exists or ml.uidValidity != ul.uidValidity:
            fresh = self.rewrite or ul.nextUid <= 1 or ml.exists
            self._recreateModlog(fresh)

    def _setAside(self, path, error):
        """A corrupt index file: say so, move it aside, rebuild it."""
        name = os.path.basename(path)
        moved = setAside(path)
        log.warn(
            "maildir {folder}: {name} is corrupt ({error}); {what}",
            folder=self.label(),
            name=name,
            error=error,
            what=f"moved to {name}.corrupt and rebuilt" if moved else "rebuilt",
        )

    def _refreshKeywords(self):
        kw = self.keywords
        try:
            changed = kw.refresh()
        except CorruptFile as e:
            self._setAside(kw.path, e)
            kw.refresh()
            return
        if changed and kw.badLines:
            log.warn(
                "maildir {folder}: {name} has {n} unusable line(s); ignored",
                folder=self.label(),
                name=Keywords.NAME,
                n=kw.badLines,
            )

    def _recreateModlog(self, fresh, body=(), highest=None, floor=None):
        """
        Start a new sidecar.  ``fresh``: a new UIDVALIDITY epoch (or no UID
        ever handed out), so modseqs may start at 1.  Otherwise the sidecar
        was lost while the UIDs stayed: we cannot know which modseqs were
        handed out, so start above any plausible one (microseconds since the
        epoch) and forget expunges (expungedSince returns None below it).
        """
        if highest is None:
            highest = 1 if fresh else int(time.time() * 1e6)
        if floor is None:
            floor = 0 if fresh else highest
        self.modlog.create(self.path, self.uidlist.uidValidity, highest, floor, body)
        fsyncDir(self.path)

    def flush(self, batch):
        """Make a batch durable: names first, then the index files."""
        if batch.keywords:
            self.keywords.write()
            batch.dirs.add(self.path)
            batch.keywords = False
        for d in batch.dirs:
            fsyncDir(d)
        batch.dirs = set()
        if batch.rewriteUidlist and not self.rewrite:
            self.rewrite = True
            self.rewriteRecords = []
        # UIDs are on disk before the sidecar mentions them, so a failure in
        # between can never let a UID be given out twice.
        if batch.records:
            if self.uidlist.exists:
                self.uidlist.append(batch.records)
            elif self.full is None:
                # A new uidlist (new UIDVALIDITY), written on unlock.
                self.rewriteRecords.extend(batch.records)
            batch.records = []
        batch.recorded = True
        batch.rewriteUidlist = False
        if batch.lines:
            self.modlog.append(batch.lines)
            batch.lines = []

    def doRewrite(self, dotlock):
        """Called by Locked before unlocking: replace the uidlist."""
        records = self._liveRecords() if self.full is not None else self.rewriteRecords
        self.rewrite = False
        self.rewriteRecords = []
        self.uidlist.replaceWith(dotlock, records)

    def forgetState(self):
        """
        An operation failed under the lock (a full disk, say) after it may
        have changed in-memory state that never reached the disk: the next
        UID, keyword letters, modseqs, flags.  Forget all of it; the next
        use reads the truth from the disk again (see :meth:`_recover`).
        """
        self.uidlist.reset()
        self._trustIno = self.modlog.ino
        self.modlog.reset()
        self.keywords = Keywords(self.path)
        if self.full is not None:
            self.full.broken = True
            self.full.dirty = True

    def _recover(self):
        """
        Rebuild a broken full index from the disk.  The delta brings the
        reactor's copy (which saw none of the failed operation) in line:
        every message as it is now (unchanged ones are no news), and
        expunges for what is gone.
        """
        old = self.full
        self.full = Full()
        try:
            delta = self.sync(initial=True)
        except BaseException:
            self.full = old
            raise
        full = self.full
        if old.uidValidity and old.uidValidity != full.uidValidity:
            delta.reset = True
            return delta
        delta.added = sorted(full.infos.values(), key=byUid)
        known = set(old.infos)
        known.update(uid for _, uid in old.expunged[old.expungedMark :])
        gone = sorted(uid for uid in known if uid not in full.infos)
        if gone:
            when = {uid: m for m, uid in full.expunged}
            highest = max(self.modlog.highest, 1)
            delta.expunged = [(when.get(uid, highest), uid) for uid in gone]
        return delta

    def abandonRewrite(self):
        self.rewrite = False
        self.rewriteRecords = []
        self.uidlist.reset()
        if self.full is not None:
            self.full.dirty = True

    def _liveRecords(self):
        full = self.full
        out = []
        for uid in sorted(full.infos):
            name = full.where[uid][4:]
            out.append((uid, name.partition(":")[0], full.ext.get(uid, ())))
        return out

    # Loading and syncing (full mode)

    def load(self):
        """Build the full index (under the lock).  Returns a snapshot."""
        # The cyclic GC stays on: switching it off here would switch it off
        # for every thread of the process, not just this load.
        with self.locked():
            self.full = Full()
            self.uidlist.reset()
            # Read before by this process: nothing can have been lost since.
            self._trustIno = self.modlog.ino
            self.modlog.reset()
            self.keywords = Keywords(self.path)
            try:
                delta = self.sync(initial=True)
            except BaseException:
                self.full = None
                raise
            return self._snapshot(delta.added)

    def _snapshot(self, infos):
        full = self.full
        self.absorbing = False  # the snapshot carries all of it
        return {
            "seq": self.seq,
            "infos": infos,
            "uidValidity": full.uidValidity,
            "mailboxId": full.mailboxId,
            "uidNext": self.uidlist.nextUid,
            "highest": max(self.modlog.highest, 1),
            "floor": self.modlog.floor,
            "expunged": list(full.expunged[-tuning.KEEP_EXPUNGED:]),
            "firstRecent": readFirstRecent(self.path, full.uidValidity, self.uidlist.nextUid, self.label()),
        }

    def saveFirstRecent(self, uidValidity, firstRecent):
        """(Thread.)  Write ``mailnet-recent`` (see :mod:`mailnet.store.maildir.recent`)."""
        if not self.deleted:
            writeFirstRecent(self.path, uidValidity, firstRecent)

    def unload(self):
        with self.lock:
            full = self.full
            if full is not None and not full.dirty and None not in full.stamps.values():
                self.blindStamps = (full.stamps["new"], full.stamps["cur"])
            else:
                self.blindStamps = None
            self.full = None

    def refresh(self):
        """Cheap check, then a sync if anything changed.  Returns a delta."""
        full = self.full
        if full is None:
            return None
        if not full.dirty and not self._changedOnDisk():
            return None
        with self.locked():
            if self.full is None:
                return None
            return self.finish(self.sync())

    def unchanged(self):
        """
        (Any thread; the reactor's, for a refresh.)  True when :meth:`refresh`
        would find nothing to do: the same check, a few stats, no lock.  A
        worker changing the folder meanwhile makes it answer False (a stamp
        differs until the worker has recorded the new one), never a wrong True.
        """
        full = self.full
        if full is None or full.dirty:
            return False
        try:
            return not self._changedOnDisk()
        except OSError:
            return False

    def settled(self, seq):
        """
        (The reactor's thread.)  :meth:`unchanged`, and no worker has taken
        in changes the reactor, at delta ``seq``, has not been given: then
        the reactor's copy is as current as a refresh would make it, even
        while a worker runs an operation.  In this order: a sync that took
        in others' changes sets ``absorbing`` before it records the new
        stamps, and :meth:`finish` numbers the delta before it clears it.
        """
        return self.unchanged() and not self.absorbing and self.seq == seq

    def _changedOnDisk(self):
        full = self.full
        if full.verifyAfter and time.time() >= full.verifyAfter:
            return True
        if dirStamp(os.path.join(self.path, "new")) != full.stamps["new"]:
            return True
        if dirStamp(os.path.join(self.path, "cur")) != full.stamps["cur"]:
            return True
        for f in (self.uidlist, self.modlog):
            st = f.stamp()
            if st is None or st[0] != f.ino or st[1] != f.offset:
                return True
        return False

    def finish(self, delta):
        """Number a delta for the reactor (None when nothing changed)."""
        if delta is None or delta.empty():
            self.absorbing = False
            return None
        self.seq += 1
        delta.seq = self.seq
        self.absorbing = False
        delta.uidValidity = self.full.uidValidity
        delta.mailboxId = self.full.mailboxId
        delta.uidNext = self.uidlist.nextUid
        delta.highest = max(self.modlog.highest, 1)
        delta.floor = self.modlog.floor
        return delta

    def sync(self, initial=False, moveNew=True, listDirs=True):
        """
        Bring the full index in line with the disk (under the lock), writing
        what that needs (new UIDs, sidecar lines).  Returns a delta.
        ``listDirs=False`` only reads what others appended to the index
        files and leaves the directory scan to the next sync.
        """
        self.absorbing = True  # until the delta is numbered (finish), if it holds anything
        delta = self._sync(initial, moveNew, listDirs)
        if delta is None or delta.empty():
            self.absorbing = False
        return delta

    def _sync(self, initial, moveNew, listDirs):
        if self.full.broken and not initial:
            return self._recover()
        full = self.full
        ul, ml = self.uidlist, self.modlog
        batch = Batch()
        delta = Delta()

        # 1. The uidlist.
        try:
            replaced, records = ul.readNew()
        except CorruptFile as e:
            self._setAside(ul.path, e)
            ul.reset()
            replaced, records = True, []
        if not ul.exists:
            ul.reset()
            ul.uidValidity = newUidValidity()
            ul.hdrNext = 1
            batch.rewriteUidlist = True
            replaced = True
        if replaced:
            if full.uidValidity and full.uidValidity != ul.uidValidity:
                # A new UIDVALIDITY: every message is new.
                delta.reset = True
                full = self.full = Full()
                listDirs = True
            full.uidValidity = ul.uidValidity
            full.recs = {}
            full.dirty = True
        for uid, base, ext in records:
            full.recs[base] = uid
            if ext:
                full.ext[uid] = ext
            elif uid in full.ext:
                del full.ext[uid]
        if records:
            full.dirty = True
        if not isMailboxGuid(ul.guid):
            # The mailbox id is Dovecot's mailbox GUID in the header: a
            # uidlist without one (an old Dovecot, version 1) gets one.
            ul.guid = secrets.token_hex(16)
            batch.rewriteUidlist = True
        full.mailboxId = ul.guid

        # 2. The sidecar.
        try:
            mreplaced, entries = ml.readNew(trustIno=self._trustIno)
            self._trustIno = None
        except CorruptFile as e:
            self._setAside(ml.path, e)
            ml.reset()
            mreplaced, entries = True, []
        if not ml.exists or ml.uidValidity != ul.uidValidity:
            fresh = (
                batch.rewriteUidlist
                or delta.reset
                or ml.exists  # another UIDVALIDITY epoch
                or ul.nextUid <= 1  # no UID ever handed out
            )
            self._recreateModlog(fresh)
            mreplaced, entries = True, []
            full.pending = {}
            full.pendingX = {}
            if not fresh:
                full.expunged = []
                full.expungedSet = set()
        if mreplaced and not initial:
            full.dirty = True
        pending, pendingX, infos = full.pending, full.pendingX, full.infos
        for entry in entries:
            kind, m, uid = entry[0], entry[1], entry[2]
            if kind == "a":
                pending[uid] = entry
                if pendingX:
                    pendingX.pop(uid, None)
            elif kind == "f":
                p = pending.get(uid)
                if p is not None:
                    pending[uid] = ("a", m, uid, p[3], p[4], entry[3])
                else:
                    info = infos.get(uid)
                    if info is not None:
                        pending[uid] = ("a", m, uid, info.internalDate, info.size, entry[3])
            elif kind == "x":
                pending.pop(uid, None)
                pendingX[uid] = m
        if entries:
            full.dirty = True

        self._refreshKeywords()

        # 3. The directories, when something may have changed.
        m = None

        def modseq():
            nonlocal m
            if m is None:
                m = self.newModseq()
            return m

        if listDirs:
            newDir = os.path.join(self.path, "new")
            curDir = os.path.join(self.path, "cur")
            stampNew, stampCur = dirStamp(newDir), dirStamp(curDir)
            if stampNew is None or stampCur is None:
                raise NoSuchFolder(self.folderName)
            if (
                initial
                or full.dirty
                or stampNew != full.stamps["new"]
                or stampCur != full.stamps["cur"]
                or (full.verifyAfter and time.time() >= full.verifyAfter)
            ):
                listing = self._list()
                self._reconcile(listing, batch, delta, modseq, initial)
                # Only after a scan that worked: a failed one is done again.
                full.dirty = False
                full.stamps = {"new": stampNew, "cur": stampCur}
                full.verifyAfter = unsettledUntil(stampNew, stampCur)
            if moveNew:
                token = self.checkpoint()
                if self._moveNewToCur(batch):
                    self.restamp(token)
        self._maybeCompact(batch)
        self.flush(batch)
        return delta

    def checkpoint(self):
        """Before changing new/ or cur/: which ones we still know exactly."""
        full = self.full
        if full is None:
            return None
        return {
            sub: dirStamp(os.path.join(self.path, sub)) == full.stamps[sub]
            for sub in ("new", "cur")
        }

    def restamp(self, token):
        """
        After our own changes: remember the directories' new mtimes (where
        nobody else changed them before us), so the next sync need not list
        them.  A change by another program within the same timestamp tick
        would hide behind ours, so list once more when things have settled.
        """
        if token is None or self.full is None:
            return
        full = self.full
        for sub, known in token.items():
            if known:
                full.stamps[sub] = dirStamp(os.path.join(self.path, sub))
            else:
                full.dirty = True
        if tuning.DIR_SETTLE_SECS > 0:
            full.verifyAfter = time.time() + tuning.DIR_SETTLE_SECS

    def label(self):
        """The folder relative to the mail directory, for log lines."""
        return os.path.relpath(self.path, self.store.root)
