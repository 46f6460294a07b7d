"""
The message-list index of an account (``IAccount.emailSummaries`` and
``IAccount.listEmails``), shared by the builtin backends (memory: SQLite
in memory; Maildir: ``mailnet-list.sqlite``, a file of our own beside
Dovecot's).  See "Message list index" in docs/store.md; in short:

* One row per email id: its mailbox id and UID, received date, size,
  thread id and the list fields of :mod:`mailnet.mail.summary` (JSON).
  A row whose message is gone keeps its fields for a day with no mailbox
  (a MOVE seen from the source first keeps them for the destination).
* Per folder, by mailbox id: the UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ
  the rows were last brought up to, and a *stamp* of the folder on disk
  (the backend's cheap "has it changed" token: Maildir stats new/, cur/
  and ``dovecot-uidlist``).
* :meth:`AccountSummaries.catchUp` compares each folder's stamp with the
  recorded one; a folder that changed is opened (which takes in what
  other programs wrote) and brought up to date: messages above the
  recorded UIDNEXT are new, ``expungedSince(modseq)`` gives those that
  went (a full comparison of UIDs and email ids when it cannot tell).  A
  new message whose email id has a row (a MOVE) only changes mailbox and
  UID; others are read (up to ``READ_LIMIT`` bytes, in the store's
  threads), summarised and inserted, 256 per transaction, and their
  thread ids asked of the folder (``IFolder.threadIds``), which fills the
  thread index too.
* The catch-up runs before every ``listEmails``; ``emailSummaries``
  checks each row against its folder's index and indexes a message it
  does not have on the spot.
* Deliveries are indexed in the background: the backend reports them
  (:meth:`AccountSummaries.delivered`) and reads them from their files
  (its ``readDelivered``) once deliveries pause, without opening the
  folder.
"""

from __future__ import annotations

import io
import json
import re
import time

from twisted.internet import defer
from twisted.python.failure import Failure

from mailnet.logs import Logger
from mailnet.mail.summary import READ_LIMIT, Summary, summarize
from mailnet.store.interfaces import EmailList, EmailSummary, NoSuchFolder, StoreError, messageBytes
from mailnet.store.summaryindex import FILE_NAME, SummaryIndex
from mailnet.store.threads import HEADER_LIMIT

__all__ = ["FILE_NAME", "AccountSummaries", "SummaryIndex", "summaryOf"]

log = Logger()

BATCH = 256  # messages read and indexed per transaction
def _readBatch(batch):
    """
    (Blocking.)  ``[(emailId, uid, info, f)]`` -> ``([(emailId, uid,
    received, size, json)], {uid: header})``; closes the files.
    """
    out = []
    headers = {}
    for emailId, uid, info, f in batch:
        try:
            data = messageBytes(f)
            if data is None:
                data = f.read(READ_LIMIT)
        except (OSError, ValueError):
            continue
        finally:
            f.close()
        fields, headers[uid] = summaryOf(data)
        out.append((emailId, uid, info.internalDate, info.size, fields))
    return out, headers


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def summaryOf(data: bytes):
    """(Blocking.)  ``(fields JSON, header)`` of a message's first bytes: a row's fields, the thread index's key."""
    fields = json.dumps(summarize(data).toJson(), ensure_ascii=False, separators=(",", ":"))
    end = _HEADER_END.search(data, 0, HEADER_LIMIT)
    return fields, (data[:end.end()] if end is not None else data[:HEADER_LIMIT])


class _Headers:
    """
    A folder seen through headers read already: what
    :meth:`mailnet.store.threads.AccountThreads.threadIds` needs
    (``emailIds``, ``get``, ``openMessage``), so the thread index takes
    the new messages' keys without opening their files again.
    """

    def __init__(self, folder, headers):
        self.folder = folder
        self.headers = headers

    def emailIds(self, uids):
        return self.folder.emailIds(uids)

    def get(self, uid):
        return self.folder.get(uid)

    def openMessage(self, uid):
        header = self.headers.get(uid)
        if header is None:
            return self.folder.openMessage(uid)
        return io.BytesIO(header)


class _Delivered:
    """
    Messages just delivered, seen as the folder view that
    :meth:`mailnet.store.threads.AccountThreads.threadIds` needs, without
    opening the folder: email ids, internal dates and headers known.
    """

    def __init__(self, emailIds, dates, headers):
        self.ids = emailIds
        self.dates = dates
        self.headers = headers

    def emailIds(self, uids):
        return {u: self.ids[u] for u in uids if u in self.ids}

    def get(self, uid):
        date = self.dates.get(uid)
        return None if date is None else _Dated(date)

    def openMessage(self, uid):
        return io.BytesIO(self.headers[uid])


class _Dated:
    __slots__ = ("internalDate",)

    def __init__(self, date):
        self.internalDate = date


class _Serial:
    """
    Runs an async job at most once at a time; callers that come while it
    runs share the next run (which starts when the current one ends, so it
    sees what they wanted seen).
    """

    def __init__(self, job):
        self.job = job
        self.running = None
        self.waiting = None

    def __call__(self):
        if self.running is None:
            return self._start()
        if self.waiting is None:
            self.waiting = []
        d = defer.Deferred()
        self.waiting.append(d)
        return d

    def _start(self):
        out = defer.Deferred()
        self.running = True

        def done(value):
            self.running = None
            waiting, self.waiting = self.waiting, None
            if waiting:
                def tell(v):
                    for w in waiting:
                        (w.errback if isinstance(v, Failure) else w.callback)(v)

                self._start().addBoth(tell)
            (out.errback if isinstance(value, Failure) else out.callback)(value)

        defer.ensureDeferred(self.job()).addBoth(done)
        return out


class AccountSummaries:
    """
    The list index of one account, for a backend: ``account`` (its
    IAccount: listFolders, openFolder, findEmail), ``stamps()`` (blocking:
    ``{folderName: stamp string or None}`` for every folder; None means
    "look"), ``run(f, *args) -> Deferred`` for blocking work, and
    ``later(delay, f)`` to schedule background work (None: no background
    work; lookups catch up on the spot).
    """

    def __init__(self, index: SummaryIndex, account, stamps, run, later=None, delay=1.0, keepOpen=0,
                 maxDelay=None, threads=None, clock=time.monotonic, readDelivered=None):
        self.index = index
        self.readDelivered = readDelivered
        self._pending = {}  # folder key -> [item] delivered, not indexed yet
        self.maxDelay = max(delay, maxDelay if maxDelay is not None else 10 * delay)
        self.threads = threads  # the account's AccountThreads (None: ask each folder)
        self.clock = clock
        self._first = None  # when the first change not taken in yet was reported
        self.account = account
        self.stamps = stamps
        self.run = run
        self.later = later
        self.delay = delay
        self.keepOpen = keepOpen
        self.catchUp = _Serial(self._catchUp)
        self._scheduled = None
        self._due = 0.0
        self._unpinTimer = None
        self._pins = {}  # folder name -> (handle kept open, last use)
        self._names = {}  # mailbox id -> folder name, as last seen
        self.reconciled = 0  # folders brought up to date (for tests)
        self.indexed = 0  # messages read and indexed (for tests and the bench)

    # Background

    def delivered(self, folder, items):
        """
        Messages were delivered into ``folder`` (a key for the backend's
        ``readDelivered(folder, items)``, which reads them in a worker
        thread without opening the folder): index them in the background
        once deliveries pause for ``delay`` seconds, and at the latest
        ``maxDelay`` seconds after the first one (indexing yields to
        delivery: during a burst the CPU goes to SMTP).
        """
        if self.later is None or self.readDelivered is None:
            return
        self._pending.setdefault(folder, []).extend(items)
        self._schedule()

    def _schedule(self):
        now = self.clock()
        if self._first is None:
            self._first = now
        due = min(now + self.delay, self._first + self.maxDelay)
        if self._scheduled is not None:
            if self._due <= due:
                self._due = due  # pushed back: _background looks again when it fires
                return
            self._scheduled.cancel()
        self._due = due
        self._scheduled = self.later(max(0.0, due - now), self._background)

    def _background(self):
        now = self.clock()
        if self._due > now + 0.001:
            self._scheduled = self.later(self._due - now, self._background)
            return
        self._scheduled = None
        self._first = None
        d = defer.ensureDeferred(self._indexDelivered())
        d.addErrback(lambda f: log.warn("message list index: indexing deliveries failed: {e}",
                                        e=getattr(f.value, "strerror", None) or str(f.value)))

    async def _indexDelivered(self):
        pending, self._pending = self._pending, {}
        for folder, items in pending.items():
            for start in range(0, len(items), BATCH):
                found = await self.run(self.readDelivered, folder, items[start:start + BATCH])
                if found is None:
                    continue  # left to the next catch-up
                mailbox, entries, headers = found
                if not entries:
                    continue
                await self.run(self.index.putDelivered, mailbox, entries)
                self.indexed += len(entries)
                if self.threads is not None:
                    view = _Delivered({e[1]: e[0] for e in entries}, {e[1]: e[2] for e in entries}, headers)
                    try:
                        threads = await self.threads.threadIds(view, [e[1] for e in entries])
                    except (StoreError, OSError):
                        threads = {}
                    if threads:
                        await self.run(self.index.setThreads, {view.ids[u]: t for u, t in threads.items()})

    def _unpin(self):
        if not self._pins:
            return
        now = time.monotonic()
        for name, (handle, used) in list(self._pins.items()):
            if now - used >= self.keepOpen:
                del self._pins[name]
                handle.close()
        if self._pins and self.later is not None and self._unpinTimer is None:
            self._unpinTimer = self.later(self.keepOpen, self._unpinLater)

    def _unpinLater(self):
        self._unpinTimer = None
        self._unpin()

    def close(self):
        pins, self._pins = self._pins, {}
        for handle, _ in pins.values():
            handle.close()
        for timer in (self._scheduled, self._unpinTimer):
            if timer is not None and timer.active():
                timer.cancel()
        self._scheduled = self._unpinTimer = None
        self.index.close()

    # Catching up with the folders

    async def _catchUp(self):
        await self.run(self.index.check)
        stamps = await self.run(self.stamps)
        records = await self.run(self.index.folders)
        byName = {rec[0]: mailbox for mailbox, rec in records.items()}
        seen = set()
        for name, stamp in stamps.items():
            mailbox = byName.get(name)
            if mailbox is not None and stamp is not None and records[mailbox][4] == stamp:
                seen.add(mailbox)
                self._names[mailbox] = name
                continue
            mailbox = await self._reconcile(name, stamp, records)
            if mailbox is not None:
                seen.add(mailbox)
        gone = [m for m in records if m not in seen]
        if gone:
            await self.run(self.index.dropFolders, gone)
            for m in gone:
                self._names.pop(m, None)

    async def _open(self, name):
        try:
            folder = await self.account.openFolder(name)
        except NoSuchFolder:
            return None
        if self.keepOpen and self.later is not None:
            pin = self._pins.get(name)
            if pin is None:
                try:
                    self._pins[name] = (await self.account.openFolder(name), time.monotonic())
                except StoreError:
                    pass
            else:
                self._pins[name] = (pin[0], time.monotonic())
        return folder

    async def _reconcile(self, name, stamp, records):
        folder = await self._open(name)
        if folder is None:
            return None
        try:
            mailbox = folder.mailboxId
            if mailbox is None:
                return None
            self._names[mailbox] = name
            infos = folder.messages()
            uidValidity, uidNext, modseq = folder.uidValidity, folder.uidNext, folder.highestModSeq
            rec = records.get(mailbox)
            gone = None
            if rec is not None and rec[1] == uidValidity:
                gone = folder.expungedSince(rec[3])
                new = [i for i in infos if i.uid >= rec[2]]
            if gone is None:
                # First time, new UIDs, or expunges forgotten: compare everything.
                have = await self.run(self.index.uidsOf, mailbox)
                ids = folder.emailIds([i.uid for i in infos])
                gone = [u for u, e in have.items() if ids.get(u) != e]
                new = [i for i in infos if have.get(i.uid) != ids.get(i.uid)]
            failed = await self._add(folder, mailbox, new)
            if failed:
                # Unreadable right now: the next catch-up looks at them again.
                uidNext, stamp = min(uidNext, min(failed)), None
            await self.run(self.index.finishFolder, mailbox, name, uidValidity, uidNext, modseq, stamp, gone)
            self.reconciled += 1
            return mailbox
        finally:
            folder.close()

    async def _add(self, folder, mailbox, infos):
        """
        Index messages of an open folder: moved ones (a row exists) cheaply,
        others read.  Returns the UIDs that could not be read.
        """
        failed = set()
        for start in range(0, len(infos), BATCH):
            chunk = infos[start:start + BATCH]
            ids = folder.emailIds([i.uid for i in chunk])
            rows = await self.run(self.index.rows, list(ids.values()))
            moves, read, toRead = [], [], []
            for info in chunk:
                emailId = ids.get(info.uid)
                if emailId is None:
                    continue
                row = rows.get(emailId)
                if row is not None:
                    if (row[0], row[1]) != (mailbox, info.uid):
                        moves.append((emailId, info.uid, info.internalDate, info.size))
                    continue
                toRead.append((info, emailId))
            _prefetch(folder, [info.uid for info, _ in toRead])
            for info, emailId in toRead:
                try:
                    f = await defer.maybeDeferred(folder.openMessage, info.uid)
                except Exception:
                    failed.add(info.uid)  # gone meanwhile, or unreadable
                    continue
                read.append((emailId, info.uid, info, f))
            entries, headers = await self.run(_readBatch, read) if read else ([], {})
            failed.update(set(r[1] for r in read) - set(e[1] for e in entries))
            await self.run(self.index.put, mailbox, moves, entries)
            self.indexed += len(entries)
            if entries:
                # The thread index too (it reads the headers it does not know).
                try:
                    uids = [e[1] for e in entries]
                    if self.threads is not None:
                        threads = await self.threads.threadIds(_Headers(folder, headers), uids)
                    else:
                        threads = await folder.threadIds(uids)
                except (StoreError, OSError):
                    threads = {}
                if threads:
                    await self.run(self.index.setThreads, {e[0]: threads[e[1]] for e in entries if e[1] in threads})
        return failed

    # Lookups

    def listEmails(self, mailboxId=None, position=0, limit=None, newestFirst=True):
        return defer.ensureDeferred(self._listEmails(mailboxId, position, limit, newestFirst))

    async def _listEmails(self, mailboxId, position, limit, newestFirst):
        position = max(0, int(position or 0))
        if limit is not None:
            limit = max(0, int(limit))
        await self.catchUp()
        self._unpin()
        if mailboxId is not None and not isinstance(mailboxId, str):
            return EmailList([], position, 0)
        ids, total = await self.run(self.index.page, mailboxId, position, limit, bool(newestFirst))
        return EmailList(ids, position, total)

    def emailSummaries(self, emailIds):
        return defer.ensureDeferred(self._emailSummaries(emailIds))

    async def _emailSummaries(self, emailIds):
        wanted = list(dict.fromkeys(e for e in emailIds if isinstance(e, str)))
        if not wanted:
            return {}
        self._unpin()
        rows = await self.run(self.index.rows, wanted)
        byMailbox = {}
        missing = []
        for emailId in wanted:
            row = rows.get(emailId)
            if row is None or row[0] is None:
                missing.append(emailId)
            else:
                byMailbox.setdefault(row[0], []).append(emailId)
        out = {}
        for mailbox, ids in byMailbox.items():
            name = self._names.get(mailbox)
            if name is None:
                records = await self.run(self.index.folders)
                name = records.get(mailbox, (None,))[0]
            folder = await self._open(name) if name is not None else None
            if folder is None or folder.mailboxId != mailbox:
                if folder is not None:
                    folder.close()
                missing.extend(ids)
                continue
            try:
                missing.extend(await self._fromFolder(folder, {e: rows[e] for e in ids}, out))
            finally:
                folder.close()
        # Not indexed yet (or not where the index says): find them, index them now.
        byFolder = {}
        for emailId in missing:
            where = await self.account.findEmail(emailId)
            if where is not None:
                byFolder.setdefault(where[0], []).append((emailId, where[1]))
        for name, items in byFolder.items():
            folder = await self._open(name)
            if folder is None:
                continue
            try:
                mailbox = folder.mailboxId
                infos = [folder.get(uid) for _, uid in items]
                await self._add(folder, mailbox, [i for i in infos if i is not None])
                ids = [e for e, _ in items]
                fresh = await self.run(self.index.rows, ids)
                await self._fromFolder(folder, {e: r for e, r in fresh.items() if r[0] == mailbox}, out)
            finally:
                folder.close()
        return out

    async def _fromFolder(self, folder, rows, out):
        """Summaries of rows of an open folder into ``out``; returns the ids it does not have at that UID."""
        ids = folder.emailIds([r[1] for r in rows.values()])
        here = {}
        stray = []
        for emailId, row in rows.items():
            uid = row[1]
            info = folder.get(uid)
            if info is None or ids.get(uid) != emailId:
                stray.append(emailId)
            else:
                here[emailId] = (row, info)
        if not here:
            return stray
        try:
            threads = await folder.threadIds([info.uid for _, info in here.values()])
        except (StoreError, OSError):
            threads = {}
        fix = {}
        for emailId, (row, info) in here.items():
            thread = threads.get(info.uid, row[4])
            if thread != row[4] and thread is not None:
                fix[emailId] = thread
            try:
                s = Summary.fromJson(json.loads(row[5]))
            except (ValueError, TypeError, AttributeError):
                s = Summary()
            out[emailId] = EmailSummary(
                emailId=emailId, mailboxId=row[0], folder=folder.name, uid=info.uid,
                receivedAt=info.internalDate, size=info.size, flags=info.flags, threadId=thread,
                subject=s.subject, sender=s.sender, to=s.to, cc=s.cc, sentAt=s.sentAt,
                messageId=s.messageId, hasAttachment=s.hasAttachment, preview=s.preview)
        if fix:
            await self.run(self.index.setThreads, fix)
        return stray


def _prefetch(folder, uids):
    """IFolder.prefetch (a hint: a store may read the bodies in batches), when the folder has it."""
    prefetch = getattr(folder, "prefetch", None)
    if prefetch is not None and len(uids) > 1:
        prefetch(uids)
