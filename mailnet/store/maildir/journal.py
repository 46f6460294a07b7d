"""
Account state and changes for Maildir (``IAccount.currentState``,
``changesSince``, account listeners): the account's change journal
(:mod:`mailnet.store.changes`, ``<account>/mailnet-changes.sqlite``) kept
up with the folders' ``mailnet-modseq`` logs, which carry every change
with its modseq.  See "Account state and changes" in docs/store.md.

Nothing is written on a delivery's or an operation's path.  The journal
*takes in* what the logs gained since it last looked, when the state is
asked, after a change in this process when the account has listeners, and
every ``[store] changes_poll`` seconds while it has some:

1. (thread) :meth:`AccountJournal.probe`: for each folder, is everything
   in new/ and cur/ in its log?  Yes when the folder is open here and
   unchanged on disk (:meth:`Disk.unchanged`), or its directories' stamps
   are those this process saw after its own last write
   (``Disk.blindStamps``), or those the journal recorded at its last look.
   Otherwise another program wrote there (or our own writes were never
   looked at): the folder is synced, which logs what changed.
2. (reactor) sync those folders: refresh an open one, open and close
   another.
3. (thread) :meth:`AccountJournal.ingest`: read each folder's log and
   uidlist from the positions kept in the journal, turn the lines into
   changes of Emails (by email id: a MOVE is an add in one folder and an
   expunge in another of the same id, so "updated") and Mailboxes, add
   the thread rows, and store the new positions, in one transaction.

Durability comes from the logs: the positions and the rows commit
together, so after ``kill -9`` (or a power cut) the next look continues
where the last commit left off, and the logs still hold what came after.
"""

from __future__ import annotations

import os
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailnet.store.changes import (
    CREATED,
    DESTROYED,
    EMAIL,
    FILE_NAME,
    MAILBOX,
    UPDATED,
    ChangeLog,
    Listeners,
    dumps,
    loads,
)
from mailnet.store.interfaces import INBOX, NoSuchFolder, StoreError
from mailnet.store.maildir.files import CorruptFile, UidList, isMailboxGuid
from mailnet.store.maildir.layout import folderNameOf
from mailnet.store.maildir.modlog import ModLog
from mailnet.store.maildir.names import emailIdOf, messageGuid
from mailnet.store.maildir.state import dirStamp

log = Logger()

_CHUNK = 500
# Seconds between two looks started by changes made in this process: at
# a high delivery rate one look takes in many deliveries (a push channel
# hears of a change within this much, plus the look itself).
NOTIFY_GAP = 0.1


def _stamps(path):
    new, cur = dirStamp(os.path.join(path, "new")), dirStamp(os.path.join(path, "cur"))
    if new is None or cur is None:
        return None
    return [list(new), list(cur)]


def _ident(path):
    """
    ``[inode, first line]`` of an index file, or None: an inode number
    alone may be given again to a file made after one was removed (a lost
    sidecar made anew, a uidlist rewritten twice), and the first line
    (the header: UIDVALIDITY, GUID, floor) tells such files apart.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        head = os.pread(fd, 256, 0)
        return [os.fstat(fd).st_ino, head.partition(b"\n")[0].decode("utf-8", "replace")]
    finally:
        os.close(fd)


def _isLive(db, emailId):
    return db.execute("SELECT 1 FROM live WHERE email=? LIMIT 1", (emailId,)).fetchone() is not None


def _seen(info):
    # The flag letters after ":2,": S is \Seen (keywords are lower case).
    return 1 if "S" in info else 0


class AccountJournal:
    """The change journal of one Maildir account, and its listeners."""

    def __init__(self, store, account):
        self.store = store
        self.account = account
        self.path = account.path
        self.log = ChangeLog(os.path.join(self.path, FILE_NAME), store.changesKept)
        self.listeners = Listeners()
        self._waiters = []
        self._busy = False
        self._scheduled = False
        self._lastPoke = 0.0
        self._poll = None
        self.retry = False
        self.firstTry = True
        self.looked = False  # an ingest ran in this process (the baseline is taken)
        self.closed = False
        self.syncs = 0  # for tests: folders synced because of what the probe found

    # Reactor side

    def update(self):
        """Take in every change since the last look; Deferred firing with the state."""
        d = defer.Deferred()
        self._waiters.append(d)
        if not self._busy:
            self._start()
        return d

    def _start(self):
        self._busy = True
        waiters, self._waiters = self._waiters, []
        d = defer.ensureDeferred(self._update())

        def done(result):
            self._busy = False
            for w in waiters:
                if isinstance(result, Failure):
                    w.errback(result)
                else:
                    w.callback(result)
            if self._waiters:
                self._start()

        d.addBoth(done)

    async def _update(self):
        for attempt in range(2):
            need = await self.store.run(self.probe)
            for name in need:
                self.syncs += 1
                await self._sync(name)
            self.retry = False
            self.firstTry = attempt == 0
            state, types = await self.store.run(self.ingest)
            self.looked = True
            self.listeners.tell(self.account, state, types)
            if not self.retry:
                break
        return state

    async def _sync(self, name):
        folderPath = self.account._folderPath(name)[1]
        disk = self.store.disks.find(folderPath)
        index = disk.index if disk is not None else None
        try:
            if index is not None and not index.deleted:
                await index.refresh()
            else:
                handle = await self.account.openFolder(name)
                handle.close()
        except NoSuchFolder:
            pass  # deleted meanwhile: the ingest notices

    def poke(self):
        """A change was made in this process: tell the listeners soon (coalesced)."""
        if not self.listeners or self._scheduled or self.closed:
            return
        self._scheduled = True
        now = time.monotonic()
        delay = max(0.0, self._lastPoke + NOTIFY_GAP - now)

        def run():
            self._scheduled = False
            if self.closed:
                return
            self._lastPoke = time.monotonic()
            self.update().addErrback(self._failed)

        self.store.schedule(run, delay)

    def _failed(self, failure):
        if failure.check(StoreError, OSError):
            log.warn("change journal of {account}: {error}", account=self.account.username,
                     error=getattr(failure.value, "strerror", None) or failure.getErrorMessage())
        else:
            log.failure("change journal of {account}", failure, account=self.account.username)

    def addListener(self, listener):
        first = not self.listeners
        self.listeners.add(listener)
        if first and not self.looked:
            # The journal's first look takes what is there as its baseline,
            # silently: look now, so that a change made after a listener
            # came (the first delivery to a new account) is told as one.
            self.update().addErrback(self._failed)
        interval = self.store.changesPoll
        if self._poll is None and interval > 0:
            from twisted.internet import task

            self._poll = task.LoopingCall(lambda: self.update().addErrback(self._failed))
            self._poll.clock = self.store.clock()
            self._poll.start(interval, now=False)

    def removeListener(self, listener):
        self.listeners.remove(listener)
        if not self.listeners and self._poll is not None:
            self._poll.stop()
            self._poll = None

    def close(self):
        self.closed = True
        if self._poll is not None:
            self._poll.stop()
            self._poll = None
        self.log.close()

    # Thread side

    def _folderDirs(self):
        """{directory name ("" for INBOX): folder name} of the account's folders."""
        out = {"": INBOX}
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name[:1] == "." and entry.is_dir(follow_symlinks=False):
                    name = folderNameOf(entry.name)
                    if name is not None:
                        out[entry.name] = name
        return out

    def _fpath(self, dirname):
        return os.path.join(self.path, dirname) if dirname else self.path

    def _verified(self, fpath, pos):
        """
        ``(verified, stamps)``: the directories' stamps now, and whether the
        folder's log accounts for every file at them.
        """
        disk = self.store.disks.find(fpath)
        if disk is not None:
            if disk.full is not None:
                return disk.unchanged(), _stamps(fpath)
            # Under the folder's in-process lock no delivery of ours is
            # half done (its stamps are recorded before the lock goes).
            with disk.lock:
                stamps = _stamps(fpath)
                blind = disk.blindStamps
                if disk.full is None and blind is not None and None not in blind and stamps is not None:
                    if [list(s) for s in blind] == stamps:
                        return True, stamps
        stamps = _stamps(fpath)
        if stamps is None:
            return False, None
        if not pos or pos.get("stamps") != stamps or _ident(os.path.join(fpath, ModLog.NAME)) != pos.get("mlId"):
            return False, stamps
        # As the journal last saw it: from now on our own deliveries keep
        # the folder's blindStamps up to date (see ops.addMessages).
        disk = self.store.disks.get(fpath)
        with disk.lock:
            if disk.full is None and disk.blindStamps is None and _stamps(fpath) == stamps:
                disk.blindStamps = tuple(tuple(s) for s in stamps)
        return True, stamps

    def probe(self):
        """(Thread.)  Names of the folders to sync before an ingest."""
        known = self.log.read(lambda db, meta: {d: loads(s) for d, s in db.execute("SELECT dir, state FROM folders")})
        need = []
        for dirname, name in self._folderDirs().items():
            fpath = self._fpath(dirname)
            if not self._verified(fpath, known.get(dirname))[0]:
                need.append(name)
        return need

    def ingest(self):
        """(Thread.)  One transaction taking in what the logs gained.  Returns ``(state, types)``."""
        baseline = "baseline" not in self.log.read(lambda db, meta: dict(meta))
        threads = self.store.threadsAt(self.path).index
        return self.log.record(lambda txn: _Ingest(self, txn, baseline).run(), None if baseline else threads, _isLive)


class _Ingest:
    """One ingest: the folders' new log lines as journal rows (see the module docstring)."""

    def __init__(self, journal, txn, baseline):
        self.journal = journal
        self.txn = txn
        self.db = txn.db
        self.baseline = baseline
        self.adds = []  # (mailbox, uid, email, modseq, seen)
        self.updates = []  # (modseq, seen, mailbox, uid)
        self.removes = []  # (mailbox, uid)
        self.flagged = set()  # email ids whose flags changed
        self.counts = set()  # mailbox ids whose counts changed
        self.emails = set()  # email ids touched
        self._ulReader = None
        self.unread = False  # a log line whose uidlist record is not there

    def run(self):
        db = self.db
        j = self.journal
        known = {d: (m, loads(s)) for d, m, s in db.execute("SELECT dir, mailbox, state FROM folders")}
        dirs = j._folderDirs()
        oldBoxes = {m: d for d, (m, _) in known.items()}
        newBoxes = {}
        for dirname in dirs:
            mailbox = self._folder(dirname, known.get(dirname))
            if mailbox is not None:
                newBoxes[mailbox] = dirname
        for dirname in set(known) - set(dirs):
            db.execute("DELETE FROM folders WHERE dir=?", (dirname,))
        # Mailboxes: created, renamed (same id, another directory), destroyed.
        for mailbox, dirname in newBoxes.items():
            if mailbox not in oldBoxes:
                self._emit(CREATED, MAILBOX, mailbox)
            elif oldBoxes[mailbox] != dirname:
                self._emit(UPDATED, MAILBOX, mailbox)
        for mailbox in set(oldBoxes) - set(newBoxes):
            self._emit(DESTROYED, MAILBOX, mailbox)
            for uid, email in db.execute("SELECT uid, email FROM live WHERE mailbox=?", (mailbox,)).fetchall():
                self.removes.append((mailbox, uid))
                self.emails.add(email)
        self._apply()
        if self.baseline:
            self.txn.setMeta("baseline", 1)
            top = self.journal.store.threadsAt(j.path).index.read(
                lambda tdb: (tdb.execute("SELECT max(seq) FROM emails").fetchone()[0] or 0,
                             tdb.execute("SELECT max(seq) FROM merges").fetchone()[0] or 0))
            self.txn.setMeta("threadSeq", top[0])
            self.txn.setMeta("mergeSeq", top[1])

    def _emit(self, kind, type_, id_, flag=False):
        if not self.baseline:
            self.txn.emit(kind, type_, id_, flag)

    def _folder(self, dirname, old):
        """Take in one folder's log; returns its mailbox id (None: not readable now)."""
        j = self.journal
        fpath = j._fpath(dirname)
        verified, stamps = j._verified(fpath, old[1] if old else None)
        ulId = self._ulId = _ident(os.path.join(fpath, UidList.NAME))
        if old and ulId is not None and old[1].get("ulId") == ulId:
            mailbox = old[0]  # the same uidlist file: the same header GUID
        else:
            ul = UidList(fpath)
            try:
                ul.readHeaderAndLast()
            except CorruptFile:
                j.retry = True  # set aside and rebuilt when the folder is synced
                return old[0] if old else None
            if not ul.exists or not isMailboxGuid(ul.guid):
                j.retry = True
                return old[0] if old else None
            mailbox = ul.guid
        pos = old[1] if old and old[0] == mailbox else {}
        if old and old[0] != mailbox:
            # The same directory, another mailbox (deleted and made again,
            # or its uidlist rebuilt): the old one's messages are gone.
            for uid, email in self.db.execute("SELECT uid, email FROM live WHERE mailbox=?", (old[0],)).fetchall():
                self.removes.append((old[0], uid))
                self.emails.add(email)
        ml = ModLog(fpath)
        mlId = _ident(ml.path)
        if pos.get("ml") is not None and pos.get("mlId") == mlId:
            ml.ino, ml.offset = pos["ml"], pos["mlOff"]
        try:
            replaced, entries = ml.readNew(trustIno=ml.ino)
        except CorruptFile:
            j.retry = True
            return mailbox
        if mlId is None or ml.ino != mlId[0]:
            j.retry = True  # replaced while we read it: look again
            return mailbox
        if replaced and pos.get("ml") is not None and not verified:
            # A log rewritten (compacted, or made anew) while we could not
            # tell that it is complete: sync the folder and look again.
            j.retry = True
            return mailbox
        self.unread = False
        self._lines(mailbox, fpath, entries, replaced, pos)
        if self.unread:
            return mailbox
        newPos = {"ml": ml.ino, "mlOff": ml.offset, "ul": pos.get("ul") if pos.get("ulId") == ulId else None,
                  "ulOff": pos.get("ulOff", 0), "ulId": ulId, "mlId": mlId,
                  "stamps": stamps if verified else None}
        if self._ulReader is not None and ulId is not None and self._ulReader.ino == ulId[0]:
            newPos["ul"], newPos["ulOff"] = self._ulReader.ino, self._ulReader.offset
        if not old or old[0] != mailbox or old[1] != newPos:
            self.db.execute("INSERT OR REPLACE INTO folders VALUES (?, ?, ?)", (dirname, mailbox, dumps(newPos)))
        return mailbox

    def _lines(self, mailbox, fpath, entries, replaced, pos):
        db = self.db
        self._ulReader = None
        self.unread = False  # a log line whose uidlist record is not there
        if replaced:
            rows = {u: (e, m, s) for u, e, m, s in
                    db.execute("SELECT uid, email, modseq, seen FROM live WHERE mailbox=?", (mailbox,))}
            final = {}
            for e in entries:
                if e[0] == "a":
                    final[e[2]] = (e[1], e[5])
                elif e[0] == "f":
                    if e[2] in final:
                        final[e[2]] = (e[1], e[3])
                elif e[0] == "x":
                    final.pop(e[2], None)
            for uid, (email, _, _) in list(rows.items()):
                if uid not in final:
                    self.removes.append((mailbox, uid))
                    self.emails.add(email)
                    self.counts.add(mailbox)
                    del rows[uid]
            steps = [(uid, m, info) for uid, (m, info) in final.items()]
        else:
            rows = {}
            steps = []
            for e in entries:
                if e[0] == "a":
                    steps.append((e[2], e[1], e[5]))
                elif e[0] == "f":
                    steps.append((e[2], e[1], e[3]))
                elif e[0] == "x":
                    steps.append((e[2], e[1], None))
            uids = list({s[0] for s in steps})
            for i in range(0, len(uids), _CHUNK):
                chunk = uids[i:i + _CHUNK]
                q = "SELECT uid, email, modseq, seen FROM live WHERE mailbox=? AND uid IN (%s)" % ",".join("?" * len(chunk))
                for u, e, m, s in db.execute(q, [mailbox, *chunk]):
                    rows[u] = (e, m, s)
        pending = {}  # uid -> (modseq, seen) of messages new to the journal
        for uid, m, info in steps:
            row = rows.get(uid)
            if info is None:
                pending.pop(uid, None)
                if row is not None:
                    rows[uid] = None
                    self.removes.append((mailbox, uid))
                    self.emails.add(row[0])
                    self.counts.add(mailbox)
                continue
            if row is None:
                if uid not in rows and (uid not in pending or m > pending[uid][0]):
                    pending[uid] = (m, _seen(info))
            elif m > row[1]:
                seen = _seen(info)
                self.updates.append((m, seen, mailbox, uid))
                self.flagged.add(row[0])
                self.emails.add(row[0])
                if seen != row[2]:
                    self.counts.add(mailbox)
                rows[uid] = (row[0], m, seen)
        if pending:
            ids = self._emailIds(fpath, pending, pos)
            for uid, (m, seen) in pending.items():
                email = ids.get(uid)
                if email is None:
                    # Records come before lines (Disk.flush), so a line
                    # without one is a uidlist made anew under us: keep
                    # the old positions and look again.  A record lost
                    # for good (a damaged uidlist) must not stop the
                    # folder's changes: the second look goes past it.
                    if self.journal.firstTry:
                        self.journal.retry = True
                        self.unread = True
                    else:
                        log.warn("maildir journal: uid {uid} of a folder has no uidlist record; left out", uid=uid)
                    continue
                self.adds.append((mailbox, uid, email, m, seen))
                self.emails.add(email)
                self.counts.add(mailbox)

    def _emailIds(self, fpath, uids, pos):
        """{uid: email id} from the uidlist: appended records first, else all of it."""
        ul = UidList(fpath)
        if pos.get("ul") is not None and pos.get("ulId") == self._ulId:
            # Known to exist; a reader left unchanged since then reads
            # nothing new (and stays "existing": the whole file is read
            # below for records read at an earlier look than their lines).
            ul.ino, ul.offset, ul.exists = pos["ul"], pos["ulOff"], True
        out = {}
        try:
            _, records = ul.readNew()
            if not ul.exists:
                return out
            for uid, base, ext in records:
                if uid in uids:
                    out[uid] = emailIdOf(messageGuid(base, ext))
            if len(out) < len(uids):
                whole = UidList(fpath)
                _, records = whole.readNew()
                for uid, base, ext in records:
                    if uid in uids:
                        out[uid] = emailIdOf(messageGuid(base, ext))
        except CorruptFile:
            self.journal.retry = True
            return out
        self._ulReader = ul
        return out

    def _apply(self):
        db = self.db
        emails = list(self.emails)
        before = self._mailboxesOf(emails)
        if self.removes:
            db.executemany("DELETE FROM live WHERE mailbox=? AND uid=?", self.removes)
        if self.updates:
            db.executemany("UPDATE live SET modseq=?, seen=? WHERE mailbox=? AND uid=?", self.updates)
        if self.adds:
            db.executemany("INSERT OR REPLACE INTO live VALUES (?, ?, ?, ?, ?)", self.adds)
        after = self._mailboxesOf(emails)
        for email in emails:
            b, a = before.get(email, frozenset()), after.get(email, frozenset())
            if a and not b:
                self._emit(CREATED, EMAIL, email)
            elif b and not a:
                self._emit(DESTROYED, EMAIL, email)
            elif a and b and (a != b or email in self.flagged):
                self._emit(UPDATED, EMAIL, email, a != b)
        for mailbox in self.counts:
            self._emit(UPDATED, MAILBOX, mailbox, True)

    def _mailboxesOf(self, emails):
        out = {}
        for i in range(0, len(emails), _CHUNK):
            chunk = emails[i:i + _CHUNK]
            q = "SELECT email, mailbox FROM live WHERE email IN (%s)" % ",".join("?" * len(chunk))
            for email, mailbox in self.db.execute(q, chunk):
                out.setdefault(email, set()).add(mailbox)
        return {e: frozenset(m) for e, m in out.items()}
