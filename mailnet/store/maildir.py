"""
The Maildir++ store, compatible with Dovecot's on-disk format.

Layout (see ``docs/store.md`` for the details and Dovecot compatibility)::

    <root>/.tmp/                    message data being received
    <root>/<domain>/<localpart>/    one account = INBOX (cur/ new/ tmp/)
        dovecot-uidlist             UIDs (Dovecot format, version 3)
        dovecot-keywords            keyword letters a..z
        mailnet-modseq              our sidecar: modseqs, dates, sizes
        subscriptions               Dovecot "V 2" format
        .Archive.2024/              folder "Archive/2024" (+ maildirfolder)

Threads.  Every blocking call (fsync, rename, listdir, reading the index
files) runs through ``runner`` (default: a private thread pool), except
opening a message at the name the index knows (and reading it whole when
it is small): that is done on the caller's thread, because a thread-pool
round trip costs ten times the open itself; the reads of message bodies
happen on the caller's thread anyway.  A name that is gone (another
program renamed or deleted the file) is looked for by a worker.  The
reactor side keeps a mirror of each open folder's index and applies
*deltas* that the worker threads produce under the folder lock, in order
(each delta carries a per-folder sequence number).  Operations on one
folder run one at a time, in the order they were asked for (a per-folder
queue); the thread side also holds an in-process lock plus Dovecot's
``dovecot-uidlist.lock`` dotlock for every change, so other processes
(another mailnet, Dovecot) are kept out too.

UIDs are assigned at commit, under the dotlock: the commit Deferred fires
with UIDs that are already in ``dovecot-uidlist`` on disk.  Files that other
programs drop into new/ or cur/ get UIDs at the next open or refresh.

Group commit.  Deliveries and APPENDs go through one committer, which
hands them to worker threads: a commit goes out at once when no worker is
busy; commits arriving meanwhile wait and go together to the next free
worker (or to another one once eight wait).  A worker writes what the
reactor did not (a message under 128 KiB is only ever in memory on the
reactor side), fsyncs each file (data and mtime), and then places them
into each target folder through that folder's group commit: the first
worker there takes the lock once, links the files into new/ (or cur/ when
flags are given), appends all their ``dovecot-uidlist`` records and
sidecar lines in one write each, fsyncs the directory once and releases
the lock -- for its own messages and those of every worker that arrived
meanwhile (they wait, and one of them leads the next round).
"""

from __future__ import annotations

import errno
import gc
import itertools
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from mailnet.store import _dotlock, _mutf7
from mailnet.store._common import (
    FolderHandle,
    FolderLimits,
    SharedIndex,
    applyFlags,
    checkFolderCount,
    checkNewFolderName,
    newUidValidity,
    normalizeFlags,
    normalizeFolderName,
    parentsOf,
    parseUsername,
)
from mailnet.store._crlf import readCanonical
from mailnet.store._maildirfiles import (
    CorruptFile,
    Keywords,
    ModLog,
    UidList,
    canonicalSize,
    extValue,
    fsyncDir,
    setAside,
    sizesFromBase,
    splitName,
    withoutKeywords,
    writeAll,
)
from mailnet.store.interfaces import (
    INBOX,
    SPECIAL_USE,
    FolderExists,
    FolderInfo,
    IAccount,
    IDelivery,
    IMailStore,
    InvalidFolderName,
    MessageInfo,
    NoSuchAccount,
    NoSuchFolder,
    NoSuchMessage,
    StorageFull,
    StoreError,
    TemporaryStoreError,
)

log = Logger()

TMP_DIR = ".tmp"
SUBSCRIPTIONS = "subscriptions"
DELETED_PREFIX = "..mailnet-deleted."
NEW_PREFIX = "..mailnet-new."
# How many expunges the sidecar keeps for QRESYNC after compaction.
KEEP_EXPUNGED = 10000
# A directory changed less than this long ago may change again within the
# same timestamp tick; list it again next time (Dovecot: MAILDIR_SYNC_SECS).
DIR_SETTLE_SECS = 1.5
TMP_MAX_AGE = 36 * 3600
TMP_POOL_SIZE = 32
TMP_POOL_LOW = 8
# Rewrite dovecot-uidlist / the sidecar when they hold this many more lines
# than twice what is live.
UIDLIST_SLACK = 1000
MODLOG_SLACK = 5000


def makeStore(config):
    """The ``maildir`` backend factory (``[store] backend = "maildir"``)."""
    return MaildirStore(config.mailDir, limits=FolderLimits.fromConfig(config))


# Names


def _hostPart():
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072")


_HOST = _hostPart()
_counter = itertools.count(1)


def newBase(now=None):
    """A unique Dovecot-style base name: ``<sec>.M<usec>P<pid>Q<n>.<host>``."""
    now = time.time() if now is None else now
    sec = int(now)
    return f"{sec}.M{int((now - sec) * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST}"


def folderDirName(name: str) -> str:
    """
    The directory of a (normalized) folder inside the account:
    ``""`` for INBOX, ``".Archive.2024"`` for ``Archive/2024``, components
    in modified UTF-7.  A ``.`` in a component cannot be stored.
    """
    if name == INBOX:
        return ""
    parts = name.split("/")
    encoded = []
    for part in parts:
        if "." in part:
            raise InvalidFolderName(f"{name!r}: '.' is the Maildir++ separator")
        encoded.append(_mutf7.encode(part))
    dirname = "." + ".".join(encoded)
    if len(dirname.encode("utf-8")) > 250:
        raise InvalidFolderName(f"{name!r}: too long")
    return dirname


def folderNameOf(dirname: str):
    """The folder name of a ``.X.Y`` directory, or None if it is not one."""
    if not dirname.startswith(".") or dirname.startswith(".."):
        return None
    parts = dirname[1:].split(".")
    try:
        decoded = [_mutf7.decode(p) for p in parts]
    except ValueError:
        return None
    if decoded and decoded[0].upper() == INBOX:
        if len(decoded) == 1:
            return None
        decoded[0] = INBOX
    name = "/".join(decoded)
    try:
        return normalizeFolderName(name)
    except StoreError:
        return None


# Small file helpers (threads only)


def _writeFile(path, data: bytes, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        writeAll(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _makeFolderFiles(path, isInbox, uidValidity=None):
    """cur/ new/ tmp/ (+ maildirfolder), an empty uidlist and sidecar."""
    for sub in ("cur", "new", "tmp"):
        os.mkdir(os.path.join(path, sub), 0o700)
    if not isInbox:
        _writeFile(os.path.join(path, "maildirfolder"), b"")
    uv = uidValidity or newUidValidity()
    uidlist = UidList(path)
    uidlist.uidValidity = uv
    data, _ = uidlist.render([], 1)
    _writeFile(uidlist.path, data)
    ModLog(path).create(path, uv, 1, 0)
    for sub in ("cur", "new", "tmp"):
        fsyncDir(os.path.join(path, sub))
    fsyncDir(path)


def _readSubscriptions(accountPath):
    """Names from a Dovecot ``subscriptions`` file (version 1 or 2)."""
    try:
        with open(os.path.join(accountPath, SUBSCRIPTIONS), "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return []
    names = []
    version2 = text.startswith("V\t2\n\n")
    if version2:
        text = text[5:]
    for line in text.split("\n"):
        if not line:
            continue
        if version2:
            parts = [_tabUnescape(p) for p in line.split("\t")]
        elif "/" in line:
            parts = line.split("/")
        else:
            parts = line.split(".")
        try:
            decoded = [_mutf7.decode(p) for p in parts]
        except ValueError:
            decoded = parts
        try:
            names.append(normalizeFolderName("/".join(decoded)))
        except StoreError:
            continue
    return names


def _tabEscape(s):
    return s.replace("\x01", "\x011").replace("\t", "\x01t").replace("\r", "\x01r").replace("\n", "\x01n")


def _tabUnescape(s):
    if "\x01" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\x01" and i + 1 < len(s):
            out.append({"1": "\x01", "t": "\t", "r": "\r", "n": "\n", "0": "\x00"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _renderSubscriptions(names):
    lines = ["V\t2\n\n"]
    for name in names:
        lines.append("\t".join(_tabEscape(_mutf7.encode(p)) for p in name.split("/")) + "\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def _writeSubscriptions(accountPath, names):
    """Replace the file the Dovecot way: dotlock, write into it, rename."""
    path = os.path.join(accountPath, SUBSCRIPTIONS)
    lock = _dotlock.acquire(path, timeout=120, stale=30)
    try:
        lock.writeAndReplace(_renderSubscriptions(names))
    finally:
        lock.release()
    fsyncDir(accountPath)


# Deltas: what the reactor-side index must apply



_DIGITS = re.compile(r"(\d+)")


def _naturalKey(name):
    """Sort key comparing runs of digits by value: "1.M9P1" < "1.M10P1"."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]

class _Delta:
    __slots__ = ("seq", "added", "changed", "expunged", "uidValidity", "uidNext", "highest", "floor", "reset")

    def __init__(self):
        self.seq = 0
        self.added = []
        self.changed = []
        self.expunged = []  # (modseq, uid)
        self.reset = False

    def empty(self):
        return not (self.added or self.changed or self.expunged or self.reset)


class _Full:
    """The complete thread-side index of a loaded folder."""

    def __init__(self):
        self.infos = {}  # uid -> MessageInfo
        self.where = {}  # uid -> "cur/<name>" or "new/<name>"
        self.byBase = {}  # base -> uid, live messages
        self.recs = {}  # base -> uid, every uidlist record
        self.ext = {}  # uid -> extension fields of its uidlist record
        self.inNew = set()  # uids whose file is in new/
        self.pending = {}  # uid -> ("a", modseq, uid, date, vsize, info) sidecar lines not matched yet
        self.pendingX = {}  # uid -> modseq of sidecar expunge lines not applied yet
        self.expunged = []  # (modseq, uid) ascending
        self.expungedSet = set()
        self.stamps = {"new": None, "cur": None}
        self.dirty = True  # list the directories at the next sync
        self.verifyAfter = 0  # ... or once this time has passed
        self.uidValidity = 0
        # A write under the lock failed: this index may be ahead of the
        # disk (and of what the reactor was told); rebuilt at the next sync.
        self.broken = False
        self.expungedMark = 0  # len(expunged) when the lock was taken


class _Batch:
    """Writes collected under the lock, done by :meth:`_Disk._flush`."""

    def __init__(self):
        self.records = []  # (uid, base, ext) for dovecot-uidlist
        self.lines = []  # sidecar lines
        self.dirs = set()  # directories to fsync
        self.keywords = False
        self.rewriteUidlist = False
        self.recorded = False


def _byUid(info):
    return info.uid


def _unsettledUntil(*stamps):
    """When directories with these stamps can be trusted not to change unseen."""
    if DIR_SETTLE_SECS <= 0:
        return 0
    now = time.time()
    latest = max((s[1] for s in stamps if s), default=0) / 1e9
    return latest + DIR_SETTLE_SECS if now - latest < DIR_SETTLE_SECS else 0


def _dirStamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _link(src, dst):
    """Hard-link, or copy (then fsync) across file systems."""
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        tmp = dst.rsplit("/", 2)[0] + "/tmp/" + os.path.basename(dst).split(":")[0]
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, dst)


class _Disk:
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
        self.deleted = False
        self.busy = 0
        self._trustIno = None
        self.skipped = set()  # entries of new/ and cur/ that are not files
        self.unreadable = set()  # files we could not read (logged once)
        self.dotlock = None  # while locked
        # Set under the lock; done by _Locked on the way out.
        self.rewrite = False
        self.rewriteRecords = []
        # Group commit of deliveries (see place()):
        self.placeCond = threading.Condition(threading.Lock())
        self.placeQueue = []
        self.placing = False
        # Reactor side:
        self.index = None
        self.queue = _SerialQueue()

    def setPath(self, path):
        """The folder was renamed: same files, new place."""
        self.path = path
        self.uidlist.path = os.path.join(path, UidList.NAME)
        self.modlog.path = os.path.join(path, ModLog.NAME)
        self.keywords.folderPath = path
        self.keywords.path = os.path.join(path, Keywords.NAME)

    def exists(self):
        return os.path.isdir(os.path.join(self.path, "cur"))

    def locked(self):
        return _Locked(self)

    def touchLock(self):
        """In long loops under the lock: keep the dotlock from looking stale."""
        if self.dotlock is not None:
            self.dotlock.touch()

    # The index files

    def _newModseq(self):
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
            folder=self._where(),
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
                folder=self._where(),
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

    def _flush(self, batch):
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
        """Called by _Locked before unlocking: replace the uidlist."""
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
        self.full = _Full()
        try:
            delta = self._sync(initial=True)
        except BaseException:
            self.full = old
            raise
        full = self.full
        if old.uidValidity and old.uidValidity != full.uidValidity:
            delta.reset = True
            return delta
        delta.added = sorted(full.infos.values(), key=_byUid)
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
        # Building 100,000s of small objects: the cyclic GC would scan them
        # again and again for nothing (they form no cycles).
        gcWasOn = gc.isenabled()
        gc.disable()
        try:
            return self._load()
        finally:
            if gcWasOn:
                gc.enable()

    def _load(self):
        with self.locked():
            self.full = _Full()
            self.uidlist.reset()
            # Read before by this process: nothing can have been lost since.
            self._trustIno = self.modlog.ino
            self.modlog.reset()
            self.keywords = Keywords(self.path)
            try:
                delta = self._sync(initial=True)
            except BaseException:
                self.full = None
                raise
            return self._snapshot(delta.added)

    def _snapshot(self, infos):
        full = self.full
        return {
            "seq": self.seq,
            "infos": infos,
            "uidValidity": full.uidValidity,
            "uidNext": self.uidlist.nextUid,
            "highest": max(self.modlog.highest, 1),
            "floor": self.modlog.floor,
            "expunged": list(full.expunged[-KEEP_EXPUNGED:]),
        }

    def unload(self):
        with self.lock:
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
            return self._finish(self._sync())

    def _changedOnDisk(self):
        full = self.full
        if full.verifyAfter and time.time() >= full.verifyAfter:
            return True
        if _dirStamp(os.path.join(self.path, "new")) != full.stamps["new"]:
            return True
        if _dirStamp(os.path.join(self.path, "cur")) != full.stamps["cur"]:
            return True
        for f in (self.uidlist, self.modlog):
            st = f.stamp()
            if st is None or st[0] != f.ino or st[1] != f.offset:
                return True
        return False

    def _finish(self, delta):
        """Number a delta for the reactor (None when nothing changed)."""
        if delta is None or delta.empty():
            return None
        self.seq += 1
        delta.seq = self.seq
        delta.uidValidity = self.full.uidValidity
        delta.uidNext = self.uidlist.nextUid
        delta.highest = max(self.modlog.highest, 1)
        delta.floor = self.modlog.floor
        return delta

    def _sync(self, initial=False, moveNew=True, listDirs=True):
        """
        Bring the full index in line with the disk (under the lock), writing
        what that needs (new UIDs, sidecar lines).  Returns a delta.
        ``listDirs=False`` only reads what others appended to the index
        files and leaves the directory scan to the next sync.
        """
        if self.full.broken and not initial:
            return self._recover()
        full = self.full
        ul, ml = self.uidlist, self.modlog
        batch = _Batch()
        delta = _Delta()

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
                full = self.full = _Full()
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
                m = self._newModseq()
            return m

        if listDirs:
            newDir = os.path.join(self.path, "new")
            curDir = os.path.join(self.path, "cur")
            stampNew, stampCur = _dirStamp(newDir), _dirStamp(curDir)
            if stampNew is None or stampCur is None:
                raise NoSuchFolder(self.path)
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
                full.verifyAfter = _unsettledUntil(stampNew, stampCur)
            if moveNew:
                token = self._checkpoint()
                if self._moveNewToCur(batch):
                    self._restamp(token)
        self._maybeCompact(batch)
        self._flush(batch)
        return delta

    def _checkpoint(self):
        """Before changing new/ or cur/: which ones we still know exactly."""
        full = self.full
        if full is None:
            return None
        return {
            sub: _dirStamp(os.path.join(self.path, sub)) == full.stamps[sub]
            for sub in ("new", "cur")
        }

    def _restamp(self, token):
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
                full.stamps[sub] = _dirStamp(os.path.join(self.path, sub))
            else:
                full.dirty = True
        if DIR_SETTLE_SECS > 0:
            full.verifyAfter = time.time() + DIR_SETTLE_SECS

    def _list(self):
        """
        {base: "sub/name"} for new/ and cur/ (cur/ wins duplicates).  Only
        regular files count: a directory, fifo, socket, device or symlink
        (which could point anywhere) is skipped, with one log line per name.
        """
        out = {}
        skipped = set()
        for sub in ("new", "cur"):
            prefix = sub + "/"
            try:
                entries = os.scandir(os.path.join(self.path, sub))
            except FileNotFoundError:
                raise NoSuchFolder(self.path) from None
            with entries:
                for entry in entries:
                    name = entry.name
                    if name[:1] == ".":
                        continue
                    try:
                        # d_type from readdir; lstat only where the file
                        # system does not say (DT_UNKNOWN).
                        regular = entry.is_file(follow_symlinks=False)
                    except OSError:
                        regular = False
                    if not regular:
                        skipped.add(prefix + name)
                        continue
                    colon = name.find(":")
                    out[name if colon < 0 else name[:colon]] = prefix + name
        self._noteSkipped(skipped)
        return out

    def _noteSkipped(self, skipped):
        """Log each entry that is not a regular file once (not at every scan)."""
        for rel in sorted(skipped - self.skipped):
            log.warn(
                "maildir {folder}: {entry} is not a regular file; skipped",
                folder=self._where(),
                entry=rel,
            )
        self.skipped = skipped

    def _where(self):
        """The folder relative to the mail directory, for log lines."""
        return os.path.relpath(self.path, self.store.root)

    def _seen(self, uid, rel, batch, modseq, changed):
        """A known message is at ``rel``; note a rename or flag change."""
        full = self.full
        if rel == full.where[uid]:
            return
        full.where[uid] = rel
        if rel[0] == "n":
            full.inNew.add(uid)
        else:
            full.inNew.discard(uid)
        info = full.infos[uid]
        infoStr = splitName(rel[4:])[1]
        flags = self.keywords.flagsFromInfo(infoStr)
        if flags == info.flags:
            return
        p = full.pending.pop(uid, None)
        if p is not None and p[5] == infoStr and p[1] > info.modseq:
            m = p[1]  # another mailnet did it and logged it
        else:
            m = modseq()
            batch.lines.append(ModLog.flagged(m, uid, infoStr))
        new = MessageInfo(uid, flags, info.internalDate, info.size, m)
        full.infos[uid] = new
        changed[uid] = new

    def _reconcile(self, listing, batch, delta, modseq, initial=False):
        full = self.full
        changed = {}
        missing = []
        # Known messages: moved, renamed for flags, or gone.
        for base, uid in list(full.byBase.items()):
            rel = listing.pop(base, None)
            if rel is None:
                missing.append((uid, base))
            else:
                self._seen(uid, rel, batch, modseq, changed)
        if missing:
            # readdir() can miss a file renamed meanwhile: look once more.
            again = self._list()
            for uid, base in missing:
                rel = again.get(base)
                if rel is not None:
                    listing.pop(base, None)
                    self._seen(uid, rel, batch, modseq, changed)
                    continue
                self._dropMessage(uid, base)
                xm = full.pendingX.pop(uid, None)
                if xm is None:
                    xm = modseq()
                    batch.lines.append(ModLog.expunged(xm, uid))
                full.pending.pop(uid, None)
                delta.expunged.append((xm, uid))
                full.expunged.append((xm, uid))
                full.expungedSet.add(uid)
        # New files.
        added = []
        if listing:
            fresh = []
            recs, expungedSet, infos = full.recs, full.expungedSet, full.infos
            pending, where, byBase, inNew = full.pending, full.where, full.byBase, full.inNew
            flagCache = {}
            flagsFromInfo = self.keywords.flagsFromInfo
            for base, rel in listing.items():
                uid = recs.get(base)
                if uid is None or uid in expungedSet or uid in infos:
                    # No record, or an expunged file came back: a new message.
                    fresh.append((base, rel))
                    continue
                p = pending.get(uid)
                if p is not None:
                    # The common case (our own files): all we need is known.
                    colon = rel.find(":", 4)
                    infoStr = rel[colon + 3 :] if colon > 0 and rel[colon + 1 : colon + 3] == "2," else ""
                    if p[5] == infoStr:
                        flags = flagCache.get(infoStr)
                        if flags is None:
                            flags = flagCache[infoStr] = flagsFromInfo(infoStr)
                        del pending[uid]
                        info = infos[uid] = MessageInfo(uid, flags, p[3], p[4], p[1])
                        where[uid] = rel
                        byBase[base] = uid
                        if rel[0] == "n":
                            inNew.add(uid)
                        added.append(info)
                        continue
                self.touchLock()
                info = self._adopt(uid, base, rel, batch, modseq)
                if info is not None:
                    added.append(info)
            if fresh:
                # Arrival order: names start with numbers (seconds, then
                # M<usec> or a counter), so compare digit runs as numbers
                # ("M9" before "M10").
                fresh.sort(key=lambda item: _naturalKey(item[0]))
                uid = self.uidlist.nextUid
                for n, (base, rel) in enumerate(fresh):
                    if n % 500 == 0:
                        self.touchLock()
                    info = self._adopt(uid, base, rel, batch, modseq, newRecord=True)
                    if info is not None:
                        added.append(info)
                        uid += 1
        # Sidecar lines that match no file.
        for uid in list(full.pending):
            p = full.pending.pop(uid)
            info = full.infos.get(uid)
            if info is not None:
                if p[1] > info.modseq and uid not in changed:
                    # Another mailnet changed it (and maybe back again).
                    new = MessageInfo(uid, info.flags, info.internalDate, info.size, p[1])
                    full.infos[uid] = changed[uid] = new
            elif uid not in full.expungedSet:
                xm = modseq()
                batch.lines.append(ModLog.expunged(xm, uid))
                full.expunged.append((xm, uid))
                full.expungedSet.add(uid)
        for uid, xm in list(full.pendingX.items()):
            if uid not in full.infos:
                del full.pendingX[uid]
                if uid not in full.expungedSet:
                    full.expunged.append((xm, uid))
                    full.expungedSet.add(uid)
        if initial:
            # UIDs with neither a file nor an expunge line: expunged while
            # we did not look (by another program, or lines lost in a
            # crash).  Say so now, and drop their records so that this
            # happens once.
            dead = [
                uid
                for uid in full.recs.values()
                if uid not in full.infos and uid not in full.expungedSet
            ]
            if dead:
                xm = modseq()
                for uid in sorted(dead):
                    batch.lines.append(ModLog.expunged(xm, uid))
                    full.expunged.append((xm, uid))
                    full.expungedSet.add(uid)
                batch.rewriteUidlist = True
        full.expunged.sort()
        added.sort(key=_byUid)
        delta.added.extend(added)
        delta.changed.extend(changed[u] for u in sorted(changed))

    def _adopt(self, uid, base, rel, batch, modseq, newRecord=False):
        """Take a file into the index as ``uid``; returns its MessageInfo."""
        full = self.full
        infoStr = splitName(rel[4:])[1]
        flags = self.keywords.flagsFromInfo(infoStr)
        p = None if newRecord else full.pending.pop(uid, None)
        path = os.path.join(self.path, rel)
        if p is not None:
            _, m, _, date, vsize, oldInfo = p
            if oldInfo != infoStr and self.keywords.flagsFromInfo(oldInfo) != flags:
                m = modseq()
                batch.lines.append(ModLog.flagged(m, uid, infoStr))
        else:
            try:
                st = os.lstat(path)  # a symlink is not followed
            except FileNotFoundError:
                return None
            except OSError as e:
                return self._unreadable(rel, e)
            if not stat.S_ISREG(st.st_mode):
                self._noteSkipped(self.skipped | {rel})
                return None
            date = st.st_mtime
            _, w = sizesFromBase(base)
            vsize = w if w is not None else extValue(full.ext.get(uid, ()), "W")
            if vsize is None:
                try:
                    _, vsize = canonicalSize(path)
                except FileNotFoundError:
                    return None
                except OSError as e:
                    return self._unreadable(rel, e)
            m = modseq()
            batch.lines.append(ModLog.added(m, uid, date, vsize, infoStr))
        if newRecord:
            ext = ()
            if sizesFromBase(base)[1] is None:
                # Cache the CRLF size in the record, as Dovecot does.
                ext = (f"W{vsize}",)
                full.ext[uid] = ext
            batch.records.append((uid, base, ext))
            self.uidlist.lastUid = max(self.uidlist.lastUid, uid)
        full.recs[base] = uid
        full.byBase[base] = uid
        full.where[uid] = rel
        if rel[0] == "n":
            full.inNew.add(uid)
        info = MessageInfo(uid, flags, date, vsize, m)
        full.infos[uid] = info
        return info

    def _unreadable(self, rel, error):
        """A file we cannot read (permissions, replaced by a non-file): skip it."""
        if rel not in self.unreadable:
            log.warn(
                "maildir {folder}: cannot read {entry} ({error}); skipped",
                folder=self._where(),
                entry=rel,
                error=error.strerror or type(error).__name__,
            )
            self.unreadable.add(rel)
        return None

    def _dropMessage(self, uid, base):
        full = self.full
        full.inNew.discard(uid)
        full.infos.pop(uid, None)
        full.where.pop(uid, None)
        full.byBase.pop(base, None)
        full.ext.pop(uid, None)

    def _moveNewToCur(self, batch):
        """Dovecot moves new/ files to cur/ when a client syncs; so do we."""
        full = self.full
        moved = False
        inNew, full.inNew = full.inNew, set()
        for n, uid in enumerate(inNew):
            if n % 1000 == 0:
                self.touchLock()
            rel = full.where.get(uid)
            if rel is None or rel[:4] != "new/":
                continue
            target = "cur/" + rel[4:] + ":2,"
            try:
                os.rename(os.path.join(self.path, rel), os.path.join(self.path, target))
            except FileNotFoundError:
                full.dirty = True
                continue
            full.where[uid] = target
            moved = True
        if moved:
            batch.dirs.add(os.path.join(self.path, "new"))
            batch.dirs.add(os.path.join(self.path, "cur"))
        return moved

    def _maybeCompact(self, batch):
        full = self.full
        live = len(full.infos)
        if self.uidlist.lines > 2 * live + UIDLIST_SLACK:
            batch.rewriteUidlist = True
        if self.modlog.lines > 2 * (live + min(len(full.expunged), KEEP_EXPUNGED)) + MODLOG_SLACK:
            self._compactModlog(batch)

    def _compactModlog(self, batch):
        """Rewrite the sidecar as a snapshot; keep the newest expunges."""
        full = self.full
        ml = self.modlog
        m = self._newModseq()
        batch.lines = []  # folded into the snapshot
        body = []
        for uid in sorted(full.infos):
            info = full.infos[uid]
            body.append(ModLog.added(info.modseq, uid, info.internalDate, info.size, splitName(full.where[uid][4:])[1]))
        kept = full.expunged[-KEEP_EXPUNGED:]
        dropped = full.expunged[: len(full.expunged) - len(kept)]
        floor = ml.floor
        if dropped:
            floor = max(floor, max(x for x, _ in dropped))
        for xm, uid in kept:
            body.append(ModLog.expunged(xm, uid))
        full.expunged = list(kept)
        full.expungedSet = {uid for _, uid in kept}
        # Records of forgotten expunges must go too (see _reconcile).
        batch.rewriteUidlist = True
        # Renamed into place after the current batch's names are durable.
        for d in batch.dirs:
            fsyncDir(d)
        batch.dirs = set()
        self._recreateModlog(False, body, highest=m, floor=floor)

    # Operations on a loaded folder

    def opRefresh(self):
        return self.refresh()

    def _requireFull(self):
        if self.full is None:
            raise StoreError("folder is not open")

    def opSetFlags(self, uids, flags, mode, unchangedSince):
        with self.locked():
            self._requireFull()
            delta = self._sync(moveNew=False)
            full = self.full
            kw = self.keywords
            batch = _Batch()
            todo, failed = [], []
            for uid in uids:
                info = full.infos.get(uid)
                if info is None:
                    continue
                if unchangedSince is not None and info.modseq > unchangedSince:
                    failed.append(uid)
                    continue
                new = applyFlags(info.flags, flags, mode)
                if new != info.flags:
                    todo.append((info, new))
            changedInfos = []
            if todo:
                m = self._newModseq()
                renames = []
                kwChanged = False
                for info, new in todo:
                    rel = full.where[info.uid]
                    base, oldInfo = splitName(rel[4:])
                    infoStr, c = kw.infoFor(new, oldInfo)
                    kwChanged |= c
                    renames.append((info, rel, "cur/" + base + ":2," + infoStr, infoStr))
                if kwChanged:
                    # The letters must be on disk before names that use them.
                    kw.write()
                    fsyncDir(self.path)
                token = self._checkpoint()
                for info, rel, target, infoStr in renames:
                    if rel != target:
                        try:
                            os.rename(os.path.join(self.path, rel), os.path.join(self.path, target))
                        except FileNotFoundError:
                            full.dirty = True  # changed behind our back
                            continue
                        batch.dirs.add(os.path.join(self.path, target[:3]))
                        batch.dirs.add(os.path.join(self.path, rel[:3]))
                    full.where[info.uid] = target
                    full.inNew.discard(info.uid)
                    updated = MessageInfo(info.uid, kw.flagsFromInfo(infoStr), info.internalDate, info.size, m)
                    full.infos[info.uid] = updated
                    batch.lines.append(ModLog.flagged(m, info.uid, infoStr))
                    changedInfos.append(updated)
                self._restamp(token)
                self._flush(batch)
            delta.changed.extend(changedInfos)
            return changedInfos, failed, self._finish(delta)

    def opExpunge(self, uids):
        with self.locked():
            self._requireFull()
            delta = self._sync(moveNew=False)
            full = self.full
            batch = _Batch()
            removed = []
            m = None
            token = self._checkpoint()
            for uid in uids:
                rel = full.where.get(uid)
                if rel is None:
                    continue
                try:
                    os.unlink(os.path.join(self.path, rel))
                except FileNotFoundError:
                    pass
                if m is None:
                    m = self._newModseq()
                batch.dirs.add(os.path.join(self.path, rel[:3]))
                self._dropMessage(uid, rel[4:].partition(":")[0])
                batch.lines.append(ModLog.expunged(m, uid))
                full.expunged.append((m, uid))
                full.expungedSet.add(uid)
                delta.expunged.append((m, uid))
                removed.append(uid)
            if removed:
                self._restamp(token)
            self._flush(batch)
            return removed, self._finish(delta)

    def opTransfer(self, dest, uids, move):
        """COPY or MOVE ``uids`` into ``dest`` (both loaded here)."""
        with _lockAll(self, dest):
            self._requireFull()
            dest._requireFull()
            srcDelta = self._sync(moveNew=False)
            destDelta = srcDelta if dest is self else dest._sync(moveNew=False)
            full, dfull = self.full, dest.full
            items = [full.infos[uid] for uid in uids if uid in full.infos]
            pairs = []
            if items:
                batch = _Batch()
                dbatch = batch if dest is self else _Batch()
                m = dest._newModseq()
                uid = dest.uidlist.nextUid
                tokens = [(d, d._checkpoint()) for d in {self, dest}]
                for info in items:
                    rel = full.where[info.uid]
                    oldBase, oldInfo = splitName(rel[4:])
                    s, _ = sizesFromBase(oldBase)
                    base = newBase() + (f",S={s}" if s is not None else "") + f",W={info.size}"
                    if dest is not self:
                        # The source's keyword letters mean other keywords
                        # (or none yet) in dest: info.flags has them by name.
                        oldInfo = withoutKeywords(oldInfo)
                    infoStr, kwChanged = dest.keywords.infoFor(info.flags, oldInfo)
                    if kwChanged:
                        dest.keywords.write()
                        fsyncDir(dest.path)
                    target = "cur/" + base + ":2," + infoStr
                    src = os.path.join(self.path, rel)
                    dst = os.path.join(dest.path, target)
                    try:
                        if move:
                            try:
                                os.rename(src, dst)
                            except OSError as e:
                                if e.errno != errno.EXDEV:
                                    raise
                                _link(src, dst)
                                os.unlink(src)
                        else:
                            _link(src, dst)
                    except FileNotFoundError:
                        full.dirty = True  # gone behind our back
                        continue
                    dbatch.dirs.add(os.path.join(dest.path, "cur"))
                    dbatch.records.append((uid, base, ()))
                    dbatch.lines.append(ModLog.added(m, uid, info.internalDate, info.size, infoStr))
                    dest.uidlist.lastUid = max(dest.uidlist.lastUid, uid)
                    new = MessageInfo(uid, dest.keywords.flagsFromInfo(infoStr), info.internalDate, info.size, m)
                    dfull.recs[base] = uid
                    dfull.byBase[base] = uid
                    dfull.where[uid] = target
                    dfull.infos[uid] = new
                    destDelta.added.append(new)
                    pairs.append((info.uid, uid, rel))
                    uid += 1
                if move and pairs:
                    if dest is not self:
                        # The copies are durable before the originals go.
                        dest._flush(dbatch)
                    xm = self._newModseq()
                    for srcUid, _, rel in pairs:
                        batch.dirs.add(os.path.join(self.path, rel[:3]))
                        self._dropMessage(srcUid, rel[4:].partition(":")[0])
                        batch.lines.append(ModLog.expunged(xm, srcUid))
                        full.expunged.append((xm, srcUid))
                        full.expungedSet.add(srcUid)
                        srcDelta.expunged.append((xm, srcUid))
                    self._flush(batch)
                else:
                    dest._flush(dbatch)
                for d, token in tokens:
                    d._restamp(token)
            result = [(s, d) for s, d, _ in pairs]
            if dest is self:
                return result, self._finish(srcDelta), None
            return result, self._finish(srcDelta), dest._finish(destDelta)

    # Adding messages (the committer; loaded or blind)

    def addMessages(self, jobs):
        """
        Link committed message files into this folder and give them UIDs.
        ``jobs`` are ``(job, recipientIndex)``.  Returns
        ``([(job, index, uid)], delta or None)``.
        """
        with self.locked():
            full = self.full
            if full is not None:
                # Learn what others appended; the next refresh lists dirs.
                delta = self._sync(moveNew=False, listDirs=False)
            else:
                delta = None
                self._ensureLogs()
            batch = _Batch()
            self._refreshKeywords()
            kw = self.keywords
            infoCache = {}
            m = self._newModseq()
            uid = self.uidlist.nextUid
            out = []
            placed = []
            token = self._checkpoint()
            try:
                for job, idx in jobs:
                    flags = job.flags
                    if flags:
                        infoStr = infoCache.get(flags)
                        if infoStr is None:
                            infoStr, changed = kw.infoFor(flags)
                            infoCache[flags] = infoStr
                            if changed:
                                kw.write()
                                fsyncDir(self.path)
                        rel = f"cur/{job.base}:2,{infoStr}"
                    else:
                        infoStr = ""
                        rel = "new/" + job.base
                    target = os.path.join(self.path, rel)
                    if len(job.targets) == 1:
                        # The only recipient: move the file, no link needed.
                        os.rename(job.tmpPath, target)
                    else:
                        _link(job.tmpPath, target)
                    placed.append(target)
                    batch.dirs.add(os.path.join(self.path, rel[:3]))
                    batch.records.append((uid, job.base, ()))
                    batch.lines.append(ModLog.added(m, uid, job.date, job.size, infoStr))
                    out.append((job, idx, uid, rel, infoStr))
                    uid += 1
                self.uidlist.lastUid = max(self.uidlist.lastUid, uid - 1)
                self._restamp(token)
                self._flush(batch)
            except BaseException:
                if not batch.recorded:
                    # Nothing was given a UID: take the files back out.
                    for path in placed:
                        try:
                            os.unlink(path)
                        except OSError:
                            pass
                if full is not None:
                    full.dirty = True
                self.uidlist.reset()  # re-read the truth next time
                raise
            if full is not None:
                for job, idx, u, rel, infoStr in out:
                    info = MessageInfo(u, kw.flagsFromInfo(infoStr), job.date, job.size, m)
                    full.recs[job.base] = u
                    full.byBase[job.base] = u
                    full.where[u] = rel
                    if rel[0] == "n":
                        full.inNew.add(u)
                    full.infos[u] = info
                    delta.added.append(info)
            out = [(job, idx, u) for job, idx, u, _, _ in out]
            return out, (self._finish(delta) if full is not None else None)

    def place(self, items):
        """
        Group commit into this folder.  ``items`` are ``(job, recipientIndex)``
        with durable files.  The first thread here places everything pending
        with one :meth:`addMessages`; threads arriving meanwhile queue their
        items and wait, and one of them leads the next round.  Returns
        ``([(job, index, uid)], delta or None)`` for ``items``, or the
        exception that failed them.
        """
        slot = [items, None]
        cond = self.placeCond
        with cond:
            self.placeQueue.append(slot)
            while slot[1] is None and self.placing:
                cond.wait()
            if slot[1] is not None:
                return slot[1]
            self.placing = True
            slots, self.placeQueue = self.placeQueue, []
        outcomes = []
        try:
            placed, delta = self.addMessages([item for s in slots for item in s[0]])
            start = 0
            for s in slots:
                outcomes.append((placed[start:start + len(s[0])], delta))
                start += len(s[0])
        except BaseException as e:
            outcomes = [e] * len(slots)
        finally:
            with cond:
                for s, outcome in zip(slots, outcomes or [RuntimeError("placing failed")] * len(slots)):
                    s[1] = outcome
                self.placing = False
                cond.notify_all()
        return slot[1]

    # Reading a message (no lock: look the name up, retry if renamed)

    def openKnown(self, uid, size):
        """
        (On the reactor thread.)  Open the message at the name the index
        last saw, without listing anything: for a small file, open(2),
        fstat(2), read(2) and close(2).  Returns None when that name is
        gone (another program renamed or deleted the file since the last
        sync): :meth:`openMessage` in a worker thread then looks for it by
        listing the directories.
        """
        full = self.full
        rel = full.where.get(uid) if full is not None else None
        if rel is None:
            raise NoSuchMessage(uid)
        try:
            return readCanonical(self.path + "/" + rel, size)
        except FileNotFoundError:
            return None

    def openMessage(self, uid, size):
        full = self.full
        rel = full.where.get(uid) if full is not None else None
        if rel is None:
            raise NoSuchMessage(uid)
        base = rel[4:].partition(":")[0]
        for _ in range(3):
            try:
                return readCanonical(os.path.join(self.path, rel), size)
            except FileNotFoundError:
                rel = self._findBase(base)
                if rel is None:
                    raise NoSuchMessage(uid) from None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.EINVAL):
                    # Replaced by a symlink or a non-file: not followed.
                    self._unreadable(rel, e)
                    raise NoSuchMessage(uid) from None
                raise
        raise NoSuchMessage(uid)

    def _findBase(self, base):
        for sub in ("cur", "new"):
            try:
                for name in os.listdir(os.path.join(self.path, sub)):
                    if name == base or name.startswith(base + ":"):
                        return f"{sub}/{name}"
            except FileNotFoundError:
                return None
        return None


class _Locked:
    """
    The in-process lock, then Dovecot's dotlock on dovecot-uidlist.  On a
    clean exit a pending uidlist rewrite is done through the lock file.
    """

    def __init__(self, disk):
        self.disk = disk
        self.dotlock = None

    def __enter__(self):
        self.disk.lock.acquire()
        try:
            self.dotlock = _dotlock.acquire(self.disk.uidlist.path)
        except FileNotFoundError:
            self.disk.lock.release()
            raise NoSuchFolder(self.disk.path) from None
        except BaseException:
            self.disk.lock.release()
            raise
        self.disk.dotlock = self.dotlock
        if self.disk.full is not None and not self.disk.full.broken:
            self.disk.full.expungedMark = len(self.disk.full.expunged)
        return self.dotlock

    def __exit__(self, excType, exc, tb):
        disk = self.disk
        disk.dotlock = None
        if excType is not None and not issubclass(excType, StoreError):
            # StoreErrors are refusals made before anything changed.
            disk.forgetState()
        try:
            if disk.rewrite:
                if excType is None:
                    try:
                        disk.doRewrite(self.dotlock)
                    except BaseException:
                        disk.abandonRewrite()
                        disk.forgetState()
                        raise
                else:
                    disk.abandonRewrite()
        finally:
            try:
                self.dotlock.release()
            finally:
                disk.lock.release()
        return False


class _lockAll:
    """Lock one or two folders, in path order (no deadlocks)."""

    def __init__(self, *disks):
        unique = []
        for d in disks:
            if d not in unique:
                unique.append(d)
        self.locks = [d.locked() for d in sorted(unique, key=lambda d: d.path)]
        self.entered = []

    def __enter__(self):
        try:
            for lock in self.locks:
                lock.__enter__()
                self.entered.append(lock)
        except BaseException:
            self.__exit__(*__import__("sys").exc_info())
            raise
        return self

    def __exit__(self, *exc):
        while self.entered:
            self.entered.pop().__exit__(*exc)
        return False


# Reactor side


class _SerialQueue:
    """Runs operations (functions returning Deferreds) one at a time, in order."""

    def __init__(self):
        self._pending = []
        self._busy = False

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


class _FolderIndex(SharedIndex):
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
        self.uidNext = snap["uidNext"]
        self.highestModSeq = snap["highest"]
        self.floor = snap["floor"]
        self.expunged = snap["expunged"]
        self._unsorted = False
        self._waiting = {}
        self._waiters = []  # (seq, Deferred)

    # Reading

    def messages(self):
        if self._unsorted:
            self.infos = dict(sorted(self.infos.items()))
            self._unsorted = False
        return list(self.infos.values())

    def get(self, uid):
        return self.infos.get(uid)

    def expungedSince(self, modseq):
        if modseq < self.floor:
            return None
        return sorted(uid for m, uid in self.expunged if m > modseq)

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
            self.notify("messagesExpunged", gone)
        self.uidValidity = delta.uidValidity
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
            self.expunged.append((m, uid))
        if len(self.expunged) > 2 * KEEP_EXPUNGED:
            drop = self.expunged[:-KEEP_EXPUNGED]
            self.floor = max(self.floor, max(m for m, _ in drop))
            self.expunged = self.expunged[-KEEP_EXPUNGED:]
        if added:
            added.sort(key=lambda i: i.uid)
            self.notify("messagesAdded", added)
        if changed:
            self.notify("flagsChanged", changed)
        if expunged:
            self.notify("messagesExpunged", sorted(expunged))

    def drop(self):
        self.deleted = True
        gone = sorted(self.infos)
        self.infos = {}
        self.notify("messagesExpunged", gone)

    # Operations

    def _op(self, f, *args):
        """Run ``f`` in a thread through this folder's queue."""
        return self.disk.queue.run(self.store._run, f, *args)

    def _applied(self, delta, value):
        self.applyDelta(delta)
        d = self.whenApplied(delta)
        d.addCallback(lambda _: value)
        return d

    def refresh(self):
        d = self._op(self.disk.opRefresh)
        d.addCallback(lambda delta: self._applied(delta, None))
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
        return self.store._run(self.disk.openMessage, uid, info.size)

    def append(self, source, flags, internalDate):
        return self.store._append(self, source, flags, internalDate)

    def setFlags(self, uids, flags, mode, unchangedSince):
        def done(result):
            changed, failed, delta = result
            return self._applied(delta, (changed, failed))

        return self._op(self.disk.opSetFlags, uids, flags, mode, unchangedSince).addCallback(done)

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


# Accounts


@implementer(IAccount)
class MaildirAccount:
    def __init__(self, store, username, path):
        self.store = store
        self.username = username
        self.path = path

    def _folderPath(self, name):
        name = normalizeFolderName(name)
        return name, os.path.join(self.path, folderDirName(name)) if name != INBOX else self.path

    def listFolders(self):
        return self.store._run(self._listFolders)

    def _listFolders(self):
        names = []
        for entry in os.scandir(self.path):
            if entry.name[:1] != "." or not entry.is_dir():
                continue
            name = folderNameOf(entry.name)
            if name is not None:
                names.append(name)
        subscribed = set(_readSubscriptions(self.path))
        names.sort()
        return [FolderInfo(INBOX, None, INBOX in subscribed)] + [
            FolderInfo(n, SPECIAL_USE.get(n), n in subscribed) for n in names
        ]

    def createFolder(self, name):
        return defer.maybeDeferred(self._folderPath, name).addCallback(
            lambda np: self.store._run(self._createFolder, *np)
        )

    def _createFolder(self, name, path):
        with self.store._accountLock(self.path):
            if name == INBOX or os.path.isdir(path):
                raise FolderExists(name)
            limits = self.store.limits
            checkNewFolderName(name, limits)
            missing = [p for p in parentsOf(name) if not os.path.isdir(self._folderPath(p)[1])]
            checkFolderCount(self._countFolders(), len(missing) + 1, limits)
            for parent in parentsOf(name):
                ppath = self._folderPath(parent)[1]
                if not os.path.isdir(ppath):
                    self._makeFolder(ppath)
            self._makeFolder(path)

    def _countFolders(self):
        """Folders of the account, INBOX included (for [limits] folders)."""
        n = 1
        for entry in os.scandir(self.path):
            if entry.name[:1] == "." and entry.name[:2] != ".." and entry.is_dir(follow_symlinks=False):
                n += 1
        return n

    def _makeFolder(self, path):
        tmp = os.path.join(self.path, NEW_PREFIX + secrets.token_hex(6))
        os.mkdir(tmp, 0o700)
        try:
            _makeFolderFiles(tmp, isInbox=False)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsyncDir(self.path)

    def deleteFolder(self, name):
        return defer.maybeDeferred(self._folderPath, name).addCallback(self._deleteFolder)

    def _deleteFolder(self, np):
        name, path = np
        if name == INBOX:
            raise InvalidFolderName("INBOX cannot be deleted")
        return self.store._run(self._deleteFolderThread, name, path).addCallback(self.store._dropped)

    def _deleteFolderThread(self, name, path):
        with self.store._accountLock(self.path):
            if not os.path.isdir(path):
                raise NoSuchFolder(name)
            disk = self.store._diskFor(path)
            try:
                with disk.locked():
                    trash = os.path.join(self.path, DELETED_PREFIX + secrets.token_hex(6))
                    os.rename(path, trash)
                    fsyncDir(self.path)
                    disk.deleted = True
                    disk.full = None
            finally:
                self.store._forgetDisk(disk)
            shutil.rmtree(trash, ignore_errors=True)
            return disk

    def renameFolder(self, oldName, newName):
        def paths():
            return self._folderPath(oldName), self._folderPath(newName)

        d = defer.maybeDeferred(paths)
        d.addCallback(lambda p: self._rename(p[0], p[1]))
        return d

    def _rename(self, old, new):
        (oldName, oldPath), (newName, newPath) = old, new
        if newName == INBOX:
            return defer.fail(FolderExists(newName))
        if newName == oldName or newName.startswith(oldName + "/"):
            if newName == oldName:
                return defer.fail(FolderExists(newName))
            return defer.fail(InvalidFolderName(f"cannot rename {oldName!r} into itself"))
        if oldName == INBOX:
            return self._renameInbox(newName, newPath)
        d = self.store._run(self._renameThread, oldName, oldPath, newName, newPath)
        d.addCallback(self.store._renamed)
        return d

    def _renameThread(self, oldName, oldPath, newName, newPath):
        with self.store._accountLock(self.path):
            if not os.path.isdir(oldPath):
                raise NoSuchFolder(oldName)
            if os.path.lexists(newPath):
                raise FolderExists(newName)
            limits = self.store.limits
            oldDir, newDir = os.path.basename(oldPath), os.path.basename(newPath)
            moves = []
            for entry in os.listdir(self.path):
                if entry == oldDir or entry.startswith(oldDir + "."):
                    suffix = entry[len(oldDir):]
                    moves.append((entry, newDir + suffix))
                    child = folderNameOf(newDir + suffix)
                    if child is not None:
                        checkNewFolderName(child, limits)
            missing = [p for p in parentsOf(newName) if not os.path.isdir(self._folderPath(p)[1])]
            checkFolderCount(self._countFolders(), len(missing), limits)
            for parent in parentsOf(newName):
                ppath = self._folderPath(parent)[1]
                if not os.path.isdir(ppath):
                    self._makeFolder(ppath)
            for _, target in moves:
                if os.path.lexists(os.path.join(self.path, target)):
                    raise FolderExists(folderNameOf(target) or target)
            disks = self.store._disksUnder(self.path, [m[0] for m in moves])
            for disk in disks:
                disk.lock.acquire()
            renamed = []
            try:
                for source, target in moves:
                    os.rename(os.path.join(self.path, source), os.path.join(self.path, target))
                fsyncDir(self.path)
                for disk in disks:
                    source = os.path.basename(disk.path)
                    target = newDir + source[len(oldDir):]
                    self.store._rekeyDisk(disk, os.path.join(self.path, target))
                    renamed.append((disk, folderNameOf(target)))
            finally:
                for disk in disks:
                    disk.lock.release()
            # Subscriptions follow the folders.
            subs = _readSubscriptions(self.path)
            changed = False
            out = []
            for s in subs:
                if s == oldName or s.startswith(oldName + "/"):
                    s = newName + s[len(oldName):]
                    changed = True
                out.append(s)
            if changed:
                _writeSubscriptions(self.path, out)
            return renamed

    def _renameInbox(self, newName, newPath):
        """RFC 3501 s6.3.5: a new folder gets INBOX's messages."""
        @defer.inlineCallbacks
        def go():
            yield self.createFolder(newName)
            inbox = yield self.openFolder(INBOX)
            target = yield self.openFolder(newName)
            try:
                uids = [i.uid for i in inbox.messages()]
                if uids:
                    yield inbox.moveTo(uids, target)
            finally:
                inbox.close()
                target.close()

        return go()

    def setSubscribed(self, name, subscribed):
        return defer.maybeDeferred(normalizeFolderName, name).addCallback(
            lambda n: self.store._run(self._setSubscribed, n, subscribed)
        )

    def listSubscriptions(self):
        return self.store._run(lambda: list(dict.fromkeys(_readSubscriptions(self.path))))

    def _setSubscribed(self, name, subscribed):
        with self.store._accountLock(self.path):
            names = _readSubscriptions(self.path)
            present = name in names
            if subscribed and not present:
                names.append(name)
            elif not subscribed and present:
                names = [n for n in names if n != name]
            else:
                return
            _writeSubscriptions(self.path, names)

    def openFolder(self, name):
        return defer.maybeDeferred(self._folderPath, name).addCallback(
            lambda np: self.store._openFolder(np[0], np[1])
        )


# Delivery


class _Job:
    __slots__ = ("tmpPath", "base", "size", "date", "flags", "targets", "fd", "data", "error")

    def __init__(self):
        self.tmpPath = None
        self.fd = -1
        self.data = b""
        self.error = None


@implementer(IDelivery)
class MaildirDelivery:
    """
    Collects the body in memory; past ``BUFFER`` bytes it streams it into
    ``<root>/.tmp/<name>`` (a file made ahead of time).  :meth:`commit`
    hands it to the group committer, which writes what is left (the whole
    message, for most), fsyncs it and links it into every recipient folder
    -- in a worker thread, so that the reactor does no file I/O for a
    message that fits in the buffer.
    """

    BUFFER = 1 << 17  # most messages fit: the reactor writes nothing

    def __init__(self, store):
        self._store = store
        self._targets = []  # (username, folderName, path)
        self._job = None
        self._buffer = bytearray()
        self._size = 0
        self._done = False

    def addRecipient(self, username, folder=INBOX):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        name = normalizeFolderName(folder)
        accountPath = self._store._accountPath(username)
        # INBOX is the account directory, made at commit if missing: no
        # need to look at the disk (which can wait behind fsyncs).
        if name != INBOX:
            path = os.path.join(accountPath, folderDirName(name))
            if not os.path.isdir(os.path.join(path, "cur")):
                accountExists = os.path.isdir(os.path.join(accountPath, "cur"))
                if accountExists or name not in SPECIAL_USE:
                    raise NoSuchFolder(folder)
        else:
            path = accountPath
        for t in self._targets:
            if t[2] == path:
                return
        self._targets.append((username, name, path))

    def _open(self):
        job = _Job()
        try:
            job.tmpPath, job.fd = self._store._takeTmp()
        except OSError as e:
            log.error("maildir: cannot create a delivery file: {error}", error=_ioText(e))
            raise _storeError(e) from e
        self._job = job

    def _flushBuffer(self):
        if self._buffer:
            if self._job is None:
                self._open()
            try:
                writeAll(self._job.fd, self._buffer)
            except OSError as e:
                log.error("maildir: writing a delivery failed: {error}", error=_ioText(e))
                raise _storeError(e) from e
            self._buffer = bytearray()

    def write(self, data):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        self._buffer += data
        self._size += len(data)
        if len(self._buffer) >= self.BUFFER:
            self._flushBuffer()

    def commit(self, internalDate=None, flags=()):
        if self._done:
            return defer.fail(StoreError("delivery already committed or aborted"))
        self._done = True
        if not self._targets:
            self._cleanup()
            return defer.succeed([])
        job = self._job or _Job()
        self._job = None
        job.data = self._buffer  # written by the committer's thread
        self._buffer = bytearray()
        job.size = self._size
        job.date = float(time.time() if internalDate is None else internalDate)
        job.flags = normalizeFlags(flags)
        job.targets = list(self._targets)
        job.base = f"{newBase()},S={job.size},W={job.size}"
        if job.tmpPath is None:
            job.tmpPath = os.path.join(self._store._tmpDir, job.base)
        return self._store._committer.submit(job)

    def _cleanup(self):
        job, self._job = self._job, None
        self._buffer = bytearray()
        if job is not None:
            if job.fd >= 0:
                os.close(job.fd)
                job.fd = -1
            try:
                os.unlink(job.tmpPath)
            except FileNotFoundError:
                pass

    def abort(self):
        self._done = True
        self._cleanup()


def _createTmpFiles(directory, n):
    out = []
    for _ in range(n):
        path = os.path.join(directory, newBase())
        out.append((path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)))
    return out


class _Committer:
    """
    Group commit, carried out by worker threads.

    A commit goes to a worker thread at once when none is busy.  Commits
    that arrive while workers are busy wait, and go together to the next
    worker that comes back, or to another worker as soon as ``CHUNK`` of
    them wait (up to ``workers`` at once): every hand-over costs CPU in the
    reactor and in the pool, so more workers are brought in only when there
    is enough to share.  A worker writes what is left of its
    messages, fsyncs the files -- several workers at once, so the file
    system merges their journal commits -- and then places them into each
    target folder through that folder's own group commit
    (:meth:`_Disk.place`): the first worker there places, under the folder
    lock, everything pending for the folder (its own messages and those of
    the workers that arrived meanwhile, which wait): links into new/, one
    uidlist append, one directory fsync.  Then one of the waiting workers
    leads the next round.  Each worker returns the outcome of its own
    messages, and the reactor fires their Deferreds (once the folder's
    listeners have been told).
    """

    CHUNK = 8

    def __init__(self, store):
        self.store = store
        self.queue = []  # (job, Deferred) waiting for a worker
        self.busy = 0  # workers out

    @property
    def workers(self):
        return max(1, self.store._threads - 1)

    def submit(self, job):
        d = defer.Deferred()
        self.queue.append((job, d))
        self._maybeDispatch()
        return d

    def _maybeDispatch(self):
        if self.queue and (self.busy == 0 or (self.busy < self.workers and len(self.queue) >= self.CHUNK)):
            self._dispatch()

    def _dispatch(self):
        batch, self.queue = self.queue, []
        self.busy += 1
        d = self.store._run(self.store._commitJobs, [job for job, _ in batch])
        d.addCallbacks(self._committed, self._failAll, callbackArgs=(batch,), errbackArgs=(batch,))

    def _committed(self, results, batch):
        self.busy -= 1
        try:
            self._fire(results, batch)
        finally:
            self._maybeDispatch()

    def _fire(self, results, batch):
        uids = {}
        waits = []
        for disk, outcome in results:
            if isinstance(outcome, BaseException):
                continue  # the jobs carry the error
            placed, delta = outcome
            for job, idx, uid in placed:
                uids[(id(job), idx)] = uid
            index = disk.index
            if delta is not None and index is not None:
                index.applyDelta(delta)
                if delta.seq > index.seq:
                    # Fire the commits once listeners have been told.
                    waits.append(index.whenApplied(delta))
        for job, d in batch:
            error = job.error
            if error is None and any((id(job), i) not in uids for i in range(len(job.targets))):
                error = TemporaryStoreError("delivery not placed")
            if error is not None:
                d.errback(_storeError(error))
                continue
            value = [(t[0], t[1], uids[(id(job), i)]) for i, t in enumerate(job.targets)]
            if waits:
                defer.DeferredList(waits).addCallback(lambda _, d=d, v=value: d.callback(v))
            else:
                d.callback(value)

    def _failAll(self, failure, batch):
        self.busy -= 1
        if failure.check(OSError):
            log.error("group commit failed: {error}", error=_ioText(failure.value))
        else:
            log.failure("group commit failed", failure)
        for job, d in batch:
            if not d.called:
                d.errback(_storeError(failure.value))
        self.store._run(self.store._cleanupJobs, [job for job, _ in batch], True).addErrback(
            lambda f: log.failure("removing delivered tmp files", f)
        )
        self._maybeDispatch()


def _ioText(error):
    """An OSError for a log line or an answer: the errno name, never the path."""
    name = errno.errorcode.get(error.errno, "") if error.errno else ""
    text = error.strerror or type(error).__name__
    return f"{name} ({text})" if name else text


def _storeError(error):
    """What a failed commit hands its caller: a StoreError without paths."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull("mail storage is full")
    if isinstance(error, OSError):
        return TemporaryStoreError("storage error: " + _ioText(error))
    return TemporaryStoreError(type(error).__name__)


# The store


@implementer(IMailStore)
class MaildirStore:
    """
    Maildir++ accounts under ``root`` (``<root>/<domain>/<localpart>``).

    @param runner: ``runner(f, *args) -> Deferred`` runs blocking work; by
        default a private thread pool of ``threads`` threads.  Tests pass a
        synchronous runner.
    """

    def __init__(self, root, runner=None, reactor=None, threads=6, limits=None):
        self.root = os.path.abspath(root)
        self.limits = limits or FolderLimits()
        self._tmpDir = os.path.join(self.root, TMP_DIR)
        os.makedirs(self._tmpDir, mode=0o700, exist_ok=True)
        self._pool = None
        self._reactor = reactor
        self._threads = threads
        self._run = runner or self._poolRunner
        self._disks = {}
        self._disksLock = threading.Lock()
        self._accountLocks = {}
        self._accountLocksLock = threading.Lock()
        self._known = set()
        self._committer = _Committer(self)
        self._accounts = {}
        self._tmpCleaned = False
        self._tmpPool = []  # (path, fd) of empty files in .tmp, ready for use
        self._tmpRefilling = False

    # Threads

    def _poolRunner(self, f, *args):
        from twisted.internet import threads

        if self._pool is None:
            from twisted.python.threadpool import ThreadPool

            if self._reactor is None:
                from twisted.internet import reactor

                self._reactor = reactor
            self._pool = ThreadPool(0, self._threads, name="mailnet-maildir")
            self._pool.start()
            self._shutdownTrigger = self._reactor.addSystemEventTrigger(
                "during", "shutdown", self._stopPool
            )
        return threads.deferToThreadPool(self._reactor, self._pool, f, *args)

    def _stopPool(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def close(self):
        """Mark the sidecars clean (one fdatasync each), stop the threads."""

        def stop(result):
            if self._pool is not None:
                self._reactor.removeSystemEventTrigger(self._shutdownTrigger)
                self._stopPool()
            return None

        self._dropTmpPool()
        if not self._disks:
            return stop(None)
        d = self._run(self._markClean)
        d.addErrback(lambda f: log.failure("closing the maildir store", f))
        return d.addBoth(stop)

    def _markClean(self):
        with self._disksLock:
            disks = list(self._disks.values())
        for disk in disks:
            if disk.modlog.ino is None or disk.modlog.lastKind == "c" or disk.deleted:
                continue
            try:
                with disk.locked():
                    disk.modlog.markClean()
            except (OSError, StoreError):
                pass

    def _cleanTmp(self):
        """Leftovers of crashed processes (not of live ones: by age)."""
        now = time.time()
        for entry in os.scandir(self._tmpDir):
            try:
                st = entry.stat()
                age = now - st.st_mtime
                if age > TMP_MAX_AGE or (st.st_size == 0 and age > 3600):
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass

    # Registries

    def _diskFor(self, path):
        with self._disksLock:
            return self._diskLocked(path)

    def _diskLocked(self, path):
        """(Holding ``_disksLock``.)  The folder's _Disk, made when missing."""
        disk = self._disks.get(path)
        if disk is None:
            disk = self._disks[path] = _Disk(self, path)
            if len(self._disks) > 5000:
                self._evict()
        return disk

    def _evict(self):
        for path, disk in list(self._disks.items()):
            if disk.full is None and disk.index is None and not disk.busy and not disk.queue._busy:
                if disk.lock.acquire(blocking=False):
                    del self._disks[path]
                    disk.lock.release()
            if len(self._disks) < 4000:
                break

    def _forgetDisk(self, disk):
        with self._disksLock:
            if self._disks.get(disk.path) is disk:
                del self._disks[disk.path]

    def _disksUnder(self, accountPath, dirnames):
        paths = {os.path.join(accountPath, d) for d in dirnames}
        with self._disksLock:
            return sorted((d for p, d in self._disks.items() if p in paths), key=lambda d: d.path)

    def _rekeyDisk(self, disk, newPath):
        with self._disksLock:
            if self._disks.get(disk.path) is disk:
                del self._disks[disk.path]
            disk.setPath(newPath)
            if disk.full is not None:
                disk.full.dirty = True
            self._disks[newPath] = disk

    def _accountLock(self, path):
        with self._accountLocksLock:
            lock = self._accountLocks.get(path)
            if lock is None:
                lock = self._accountLocks[path] = threading.RLock()
            return lock

    # Accounts

    def _accountPath(self, username):
        try:
            domain, local = parseUsername(username)
        except ValueError as e:
            raise NoSuchAccount(str(e)) from None
        return os.path.join(self.root, domain, local)

    def getAccount(self, username, create=True):
        try:
            path = self._accountPath(username)
        except StoreError:
            return defer.fail()
        account = self._accounts.get(username)
        if account is not None:
            return defer.succeed(account)

        def done(_):
            account = self._accounts.setdefault(username, MaildirAccount(self, username, path))
            return account

        return self._run(self._ensureAccount, path, create).addCallback(done)

    def _ensureAccount(self, path, create=True):
        if path in self._known or os.path.isdir(os.path.join(path, "cur")):
            self._known.add(path)
            return
        if not create:
            raise NoSuchAccount(path)
        domainDir = os.path.dirname(path)
        madeDomain = not os.path.isdir(domainDir)
        os.makedirs(domainDir, mode=0o700, exist_ok=True)
        tmp = os.path.join(domainDir, NEW_PREFIX + secrets.token_hex(6))
        os.mkdir(tmp, 0o700)
        try:
            _makeFolderFiles(tmp, isInbox=True)
            for name in SPECIAL_USE:
                sub = os.path.join(tmp, folderDirName(name))
                os.mkdir(sub, 0o700)
                _makeFolderFiles(sub, isInbox=False)
            _writeFile(os.path.join(tmp, SUBSCRIPTIONS), _renderSubscriptions([INBOX, *SPECIAL_USE]))
            fsyncDir(tmp)
            try:
                os.rename(tmp, path)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # someone else made it
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsyncDir(domainDir)
        if madeDomain:
            fsyncDir(self.root)
        self._known.add(path)

    # Files for deliveries, made ahead of time in a thread: creating a file
    # can wait for the file system journal, which the reactor must not do.

    def _takeTmp(self):
        pool = self._tmpPool
        if len(pool) <= TMP_POOL_LOW and not self._tmpRefilling:
            self._tmpRefilling = True
            d = self._run(_createTmpFiles, self._tmpDir, TMP_POOL_SIZE - len(pool))
            d.addCallback(pool.extend)
            d.addErrback(lambda f: log.failure("making files in {dir}", f, dir=self._tmpDir))
            d.addBoth(lambda _: setattr(self, "_tmpRefilling", False))
        if pool:
            return pool.pop()
        return _createTmpFiles(self._tmpDir, 1)[0]

    def _dropTmpPool(self):
        pool, self._tmpPool[:] = list(self._tmpPool), []
        for path, fd in pool:
            os.close(fd)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def newDelivery(self):
        if not self._tmpCleaned:
            self._tmpCleaned = True
            self._run(self._cleanTmp).addErrback(lambda f: log.failure("cleaning {dir}", f, dir=self._tmpDir))
        return MaildirDelivery(self)

    # Folders

    def _openFolder(self, name, path):
        disk = self._diskFor(path)

        def start():
            index = disk.index
            if index is not None and not index.deleted:
                # Loaded already: catch up with the disk, share the index.
                d = self._run(disk.refresh)
                d.addCallback(lambda delta: index.applyDelta(delta))
                d.addCallback(lambda _: index)
                return d
            d = self._run(disk.load)
            d.addCallback(lambda snap: self._loaded(disk, name, snap))
            return d

        d = disk.queue.run(start)
        d.addCallback(lambda index: FolderHandle(index, self._released))
        return d

    def _loaded(self, disk, name, snap):
        index = disk.index = _FolderIndex(self, disk, name, snap)
        return index

    def _released(self, index):
        disk = index.disk

        def unload():
            if disk.index is not index or index.handles:
                return None
            disk.index = None
            return self._run(disk.unload)

        disk.queue.run(unload).addErrback(lambda f: log.failure("unloading folder", f))

    def _dropped(self, disk):
        index = disk.index
        if index is not None:
            disk.index = None
            index.drop()

    def _renamed(self, renamed):
        for disk, newName in renamed:
            if disk.index is not None and newName is not None:
                disk.index.name = newName

    # Jobs (threads)

    def _holdDisk(self, path):
        """The folder's _Disk, kept from eviction until :meth:`_releaseDisk`."""
        with self._disksLock:
            disk = self._diskLocked(path)
            disk.busy += 1
            return disk

    def _releaseDisk(self, disk):
        with self._disksLock:
            disk.busy -= 1

    def _commitJobs(self, jobs):
        """
        Thread: make the jobs' files durable, place them into every target
        folder (see :class:`_Committer`), take failed deliveries back out.
        Returns ``[(disk, (placed, delta) or exception)]``; failed jobs
        carry their error.
        """
        groups = self._prepareJobs(jobs)
        results = []
        try:
            for path, items in groups.items():
                disk = self._holdDisk(path)
                try:
                    outcome = disk.place(items)
                finally:
                    self._releaseDisk(disk)
                if isinstance(outcome, BaseException):
                    error = outcome
                    if isinstance(error, OSError):
                        log.error(
                            "maildir {folder}: delivery failed: {error}",
                            folder=disk._where(),
                            error=_ioText(error),
                        )
                        error = _storeError(error)
                    elif not isinstance(error, StoreError):
                        log.failure(
                            "maildir {folder}: delivery failed",
                            Failure(error, type(error), error.__traceback__),
                            folder=disk._where(),
                        )
                        error = _storeError(error)
                    for job, _ in items:
                        if job.error is None:
                            job.error = error
                results.append((disk, outcome))
        finally:
            placed = {}
            for _, outcome in results:
                if not isinstance(outcome, BaseException):
                    for job, idx, _ in outcome[0]:
                        placed.setdefault(id(job), []).append(idx)
            for job in jobs:
                if job.error is not None and id(job) in placed:
                    self._rollback(job, placed[id(job)])
            self._cleanupJobs(jobs)
        return results

    def _prepareJobs(self, jobs):
        """Write and fsync the files, make missing accounts, group by folder."""
        groups = {}
        seen = set()  # folders found in this batch
        for job in jobs:
            try:
                if job.fd < 0:
                    job.fd = os.open(job.tmpPath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                if job.data:
                    writeAll(job.fd, job.data)
                job.data = b""
                os.utime(job.fd, (job.date, job.date))
                os.fsync(job.fd)
            except OSError as e:
                log.error("maildir: writing a delivery failed: {error}", error=_ioText(e))
                job.error = _storeError(e)
            finally:
                if job.fd >= 0:
                    os.close(job.fd)
                    job.fd = -1
            if job.error is not None:
                continue
            try:
                for username, name, path in job.targets:
                    if path in seen:
                        continue
                    if username is not None:
                        # INBOX is the account directory; folders are in it
                        self._ensureAccount(path if name == INBOX else os.path.dirname(path))
                    if not os.path.isdir(os.path.join(path, "new")):
                        raise NoSuchFolder(name)
                    seen.add(path)
            except StoreError as e:
                job.error = e
                continue
            except OSError as e:
                log.error("maildir: preparing a delivery failed: {error}", error=_ioText(e))
                job.error = _storeError(e)
                continue
            for idx, (_, _, path) in enumerate(job.targets):
                groups.setdefault(path, []).append((job, idx))
        return groups

    def _cleanupJobs(self, jobs, failed=False):
        """Thread: remove the tmp files that were not renamed into place."""
        for job in jobs:
            if job.fd >= 0:
                os.close(job.fd)
                job.fd = -1
            if len(job.targets) == 1 and job.error is None and not failed:
                continue  # renamed into place
            try:
                os.unlink(job.tmpPath)
            except FileNotFoundError:
                pass
            except OSError:
                log.failure("removing {path}", path=job.tmpPath)

    def _rollback(self, job, indexes):
        """Thread: a delivery failed in one folder: remove its copies elsewhere."""
        for idx in indexes:
            path = job.targets[idx][2]
            for sub in ("new", "cur"):
                try:
                    for name in os.listdir(os.path.join(path, sub)):
                        if name.partition(":")[0] == job.base:
                            os.unlink(os.path.join(path, sub, name))
                except OSError:
                    pass

    def _append(self, index, source, flags, internalDate):
        """APPEND: the same path as a delivery, to one folder."""
        delivery = MaildirDelivery(self)
        delivery._targets.append((None, index.name, index.disk.path))

        def write():
            if isinstance(source, (bytes, bytearray, memoryview)):
                delivery.write(bytes(source))
            else:
                while True:
                    chunk = source.read(1 << 16)
                    if not chunk:
                        break
                    delivery.write(chunk)

        try:
            write()
        except BaseException:
            delivery.abort()
            return defer.fail()
        d = delivery.commit(internalDate, flags)

        return d.addCallback(lambda result: result[0][2])
