"""The Maildir++ store: accounts under a root directory, and its threads."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import threading

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailnet.durable import fsyncDir
from mailnet.store.base import FolderHandle, FolderLimits, parseUsername
from mailnet.store.changes import DEFAULT_KEEP
from mailnet.store.interfaces import INBOX, SPECIAL_USE, IMailStore, NoSuchAccount, ProcessMaildropLocks, StoreError
from mailnet.store.maildir.account import MaildirAccount
from mailnet.store.maildir.commit import Committer
from mailnet.store.maildir.delivery import MaildirDelivery, TmpPool
from mailnet.store.maildir.disk import Disk
from mailnet.store.maildir.index import FolderIndex
from mailnet.store.maildir.journal import AccountJournal
from mailnet.store.maildir.layout import (
    NEW_PREFIX,
    SUBSCRIPTIONS,
    TMP_DIR,
    folderDirName,
    makeFolderFiles,
    renderSubscriptions,
    writeFile,
)
from mailnet.store.maildir.listindex import folderStamps, readDelivered
from mailnet.store.maildir.quota import MaildirQuota
from mailnet.store.quota import QuotaUsage, policyOf
from mailnet.store.summaries import FILE_NAME as LIST_FILE
from mailnet.store.summaries import AccountSummaries, SummaryIndex
from mailnet.store.threads import FILE_NAME as THREADS_FILE
from mailnet.store.threads import AccountThreads, ThreadIndex

log = Logger()


def makeStore(config):
    """The ``maildir`` backend factory (``[store] backend = "maildir"``)."""
    store = config.store
    return MaildirStore(config.mailDir, limits=FolderLimits.fromConfig(config),
                        changesKept=store.changes_kept, changesPoll=store.changes_poll,
                        listIndexDelay=getattr(store, "list_index_delay", 2.0),
                        listIndexKeepOpen=getattr(store, "list_index_keep_open", 300),
                        listIndexMaxDelay=getattr(store, "list_index_max_delay", 30.0))


@implementer(IMailStore)
class MaildirStore:
    """
    Maildir++ accounts under ``root`` (``<root>/<domain>/<localpart>``).

    @param runner: ``runner(f, *args) -> Deferred`` runs blocking work; by
        default a private thread pool of ``threads`` threads.  Tests pass a
        synchronous runner.
    """

    def __init__(self, root, runner=None, reactor=None, threads=6, limits=None, changesKept=DEFAULT_KEEP,
                 changesPoll=30.0, schedule=None, listIndexDelay=2.0, listIndexKeepOpen=300,
                 listIndexMaxDelay=30.0):
        self.root = os.path.abspath(root)
        self.limits = limits or FolderLimits()
        self._pool = None
        self._reactor = reactor
        self.threads = threads
        self.run = runner or self._poolRunner
        self.disks = DiskRegistry(self)
        self._accountLocks = {}
        self._accountLocksLock = threading.Lock()
        self._known = set()
        self.tmp = TmpPool(os.path.join(self.root, TMP_DIR), self.run)
        self.committer = Committer(self)
        self._accounts = {}
        self._threads = {}  # account path -> AccountThreads
        # Account state and changes (journal.py): journals by account path.
        self.changesKept = changesKept
        self.changesPoll = changesPoll
        self._schedule = schedule
        self._journals = {}
        self._summaries = {}  # account path -> AccountSummaries
        # The list index catches up in the background only with a real reactor
        # (a test's synchronous runner: lookups catch up on the spot).
        self._background = runner is None
        self.listIndexDelay = listIndexDelay
        self.listIndexKeepOpen = listIndexKeepOpen
        self.listIndexMaxDelay = listIndexMaxDelay
        # Quota (quota.py): usage kept in each account's maildirsize; the
        # service sets the policy (limits per user) from [quota].
        self.quota = MaildirQuota()
        self.quotaPolicy = None
        # RFC 1939 s8: one POP3 session per maildrop, in this process (one node).
        self.maildropLock = ProcessMaildropLocks().acquire

    def schedule(self, f, delay=0):
        """Run ``f`` on the reactor in ``delay`` seconds (tests pass ``schedule``: at once)."""
        if self._schedule is not None:
            return self._schedule(f, delay)
        self.clock().callLater(delay, f)

    def clock(self):
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def journalAt(self, account):
        """The :class:`AccountJournal` of ``account`` (a MaildirAccount)."""
        journal = self._journals.get(account.path)
        if journal is None:
            journal = self._journals[account.path] = AccountJournal(self, account)
        return journal

    def pokeJournal(self, path):
        """Something changed in the folder (or account) at ``path``: tell account listeners soon."""
        journal = self._journals.get(path)
        if journal is None and os.path.basename(path).startswith("."):
            journal = self._journals.get(os.path.dirname(path))
        if journal is not None:
            journal.poke()

    def threadsAt(self, accountPath):
        """The :class:`AccountThreads` of the account at ``accountPath`` (its ``mailnet-threads.sqlite``)."""
        threads = self._threads.get(accountPath)
        if threads is None:
            index = ThreadIndex(os.path.join(accountPath, THREADS_FILE))
            threads = self._threads[accountPath] = AccountThreads(index, self.run)
            threads.onIndexed = lambda: self.pokeJournal(accountPath)
        return threads

    def summariesAt(self, accountPath):
        """The :class:`AccountSummaries` of the account at ``accountPath`` (its ``mailnet-list.sqlite``)."""
        summaries = self._summaries.get(accountPath)
        if summaries is None:
            summaries = self._summaries[accountPath] = AccountSummaries(
                SummaryIndex(os.path.join(accountPath, LIST_FILE)), self.accountAt(accountPath),
                lambda: folderStamps(accountPath), self.run, self._later if self._background else None,
                delay=self.listIndexDelay, keepOpen=self.listIndexKeepOpen, maxDelay=self.listIndexMaxDelay,
                threads=self.threadsAt(accountPath), readDelivered=lambda path, items: readDelivered(self, path, items))
        return summaries

    def summariesDelivered(self, folderPath, items):
        """
        Messages were delivered into the folder at ``folderPath`` (items for
        :func:`~mailnet.store.maildir.listindex.readDelivered`): the list
        index takes them in, in the background.
        """
        if not self._background:
            return
        accountPath = os.path.dirname(folderPath) if os.path.basename(folderPath).startswith(".") else folderPath
        self.summariesAt(accountPath).delivered(folderPath, items)

    def _later(self, delay, f):
        return self.clock().callLater(delay, f)

    def accountAt(self, accountPath):
        """The :class:`MaildirAccount` at ``accountPath`` (``<root>/<domain>/<local>``)."""
        for account in self._accounts.values():
            if account.path == accountPath:
                return account
        domain, local = os.path.basename(os.path.dirname(accountPath)), os.path.basename(accountPath)
        username = local if domain == "_local" else local + "@" + domain
        return self._accounts.setdefault(username, MaildirAccount(self, username, accountPath))

    # Threads

    def _poolRunner(self, f, *args):
        from twisted.internet import threads

        if self._pool is None:
            from twisted.python.threadpool import ThreadPool

            if self._reactor is None:
                from twisted.internet import reactor

                self._reactor = reactor
            self._pool = ThreadPool(0, self.threads, name="mailnet-maildir")
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

        self.tmp.drop()
        threads, self._threads = self._threads, {}
        for t in threads.values():
            t.close()
        journals, self._journals = self._journals, {}
        for j in journals.values():
            j.close()
        summaries, self._summaries = self._summaries, {}
        for t in summaries.values():
            t.close()
        if not self.disks:
            return stop(None)
        d = self.run(self._markClean)
        d.addErrback(lambda f: log.failure("closing the maildir store", f))
        return d.addBoth(stop)

    def _markClean(self):
        for disk in self.disks.all():
            if disk.modlog.ino is None or disk.modlog.lastKind == "c" or disk.deleted:
                continue
            try:
                with disk.locked():
                    disk.modlog.markClean()
            except (OSError, StoreError):
                pass

    def accountLock(self, path):
        """The in-process lock for changes to an account's folder list."""
        with self._accountLocksLock:
            lock = self._accountLocks.get(path)
            if lock is None:
                lock = self._accountLocks[path] = threading.RLock()
            return lock

    # Accounts

    def accountPath(self, username):
        """The account directory of ``username`` (which need not exist)."""
        try:
            domain, local = parseUsername(username)
        except ValueError as e:
            raise NoSuchAccount(str(e)) from None
        return os.path.join(self.root, domain, local)

    def getAccount(self, username, create=True):
        try:
            path = self.accountPath(username)
        except StoreError:
            return defer.fail()
        account = self._accounts.get(username)
        if account is not None:
            return defer.succeed(account)

        def done(_):
            account = self._accounts.setdefault(username, MaildirAccount(self, username, path))
            return account

        return self.run(self.ensureAccount, path, create).addCallback(done)

    def ensureAccount(self, path, create=True):
        """(Thread.)  Make the account at ``path`` unless it exists."""
        if path in self._known or os.path.isdir(os.path.join(path, "cur")):
            self._known.add(path)
            return
        if not create:
            # The account's address, not its path (the text may reach a client).
            raise NoSuchAccount(os.path.basename(path) + "@" + os.path.basename(os.path.dirname(path)))
        domainDir = os.path.dirname(path)
        madeDomain = not os.path.isdir(domainDir)
        os.makedirs(domainDir, mode=0o700, exist_ok=True)
        tmp = os.path.join(domainDir, NEW_PREFIX + secrets.token_hex(6))
        os.mkdir(tmp, 0o700)
        try:
            makeFolderFiles(tmp, isInbox=True)
            for name in SPECIAL_USE:
                sub = os.path.join(tmp, folderDirName(name))
                os.mkdir(sub, 0o700)
                makeFolderFiles(sub, isInbox=False)
            writeFile(os.path.join(tmp, SUBSCRIPTIONS), renderSubscriptions([INBOX, *SPECIAL_USE]))
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

    def quotaUsage(self, username):
        """From maildirsize alone (no scan): None without limits or when it needs recounting."""
        policy = policyOf(self)
        limits = policy.limitsFor(username)
        if not limits.limited:
            return None  # nothing to check: no stat on the delivery path
        try:
            path = self.accountPath(username)
        except StoreError:
            return None
        used = self.quota.cached(path, limits)
        if used is None:
            if path not in self._known and not os.path.isdir(path):
                return QuotaUsage(0, 0, limits, policy.warning, policy.grace)  # no account yet
            if limits.limited:
                # Recount in the background: the next RCPT knows.
                self.run(self.quota.usage, path, limits).addErrback(
                    lambda f: log.failure("maildir quota: recounting", f))
            return None
        return QuotaUsage(used[0], used[1], limits, policy.warning, policy.grace)

    def newDelivery(self):
        self.tmp.cleanOnce()
        return MaildirDelivery(self)

    # Folders

    def openFolderAt(self, name, path):
        """Open the folder ``name`` at ``path``: a handle on its shared index."""
        disk = self.disks.get(path)

        def start():
            index = disk.index
            if index is not None and not index.deleted:
                # Loaded already: catch up with the disk, share the index.
                # In its turn of the queue the deltas of the operations
                # before it are in, so when a few stats show nothing
                # changed on disk the index is current: no thread-pool
                # round trip (IMAP opens the target of every APPEND).
                if disk.unchanged():
                    return index
                d = self.run(disk.refresh)
                d.addCallback(lambda delta: index.applyDelta(delta))
                d.addCallback(lambda _: index)
                return d
            d = self.run(disk.load)
            d.addCallback(lambda snap: self._loaded(disk, name, snap))
            return d

        d = disk.queue.run(start)
        d.addCallback(lambda index: FolderHandle(index, self._released))
        return d

    def _loaded(self, disk, name, snap):
        index = disk.index = FolderIndex(self, disk, name, snap)
        return index

    def _released(self, index):
        disk = index.disk

        def unload():
            if disk.index is not index or index.handles:
                return None
            disk.index = None
            return self.run(disk.unload)

        disk.queue.run(unload).addErrback(lambda f: log.failure("unloading folder", f))


class DiskRegistry:
    """
    The :class:`Disk` of every folder this process has touched, by path
    (used from the reactor and from worker threads).
    """

    def __init__(self, store):
        self.store = store
        self._disks = {}
        self._lock = threading.Lock()

    def __bool__(self):
        return bool(self._disks)

    def all(self):
        with self._lock:
            return list(self._disks.values())

    def get(self, path):
        """The folder's Disk, made when missing."""
        with self._lock:
            return self._getLocked(path)

    def _getLocked(self, path):
        disk = self._disks.get(path)
        if disk is None:
            disk = self._disks[path] = Disk(self.store, path)
            if len(self._disks) > 5000:
                self._evict()
        return disk

    def _evict(self):
        for path, disk in list(self._disks.items()):
            if disk.full is None and disk.index is None and not disk.busy and not disk.queue.busy:
                if disk.lock.acquire(blocking=False):
                    del self._disks[path]
                    disk.lock.release()
            if len(self._disks) < 4000:
                break

    def find(self, path):
        """The folder's Disk if this process has one, else None."""
        with self._lock:
            return self._disks.get(path)

    def forget(self, disk):
        with self._lock:
            if self._disks.get(disk.path) is disk:
                del self._disks[disk.path]

    def under(self, accountPath, dirnames):
        """The Disks of these directories of an account, in path order."""
        paths = {os.path.join(accountPath, d) for d in dirnames}
        with self._lock:
            return sorted((d for p, d in self._disks.items() if p in paths), key=lambda d: d.path)

    def rekey(self, disk, newPath):
        """The folder was renamed to ``newPath``."""
        with self._lock:
            if self._disks.get(disk.path) is disk:
                del self._disks[disk.path]
            disk.setPath(newPath)
            if disk.full is not None:
                disk.full.dirty = True
            self._disks[newPath] = disk

    def hold(self, path):
        """The folder's Disk, kept from eviction until :meth:`release`."""
        with self._lock:
            disk = self._getLocked(path)
            disk.busy += 1
            return disk

    def release(self, disk):
        with self._lock:
            disk.busy -= 1
