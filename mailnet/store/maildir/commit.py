"""Group commit: making deliveries durable and placing them, in threads."""

from __future__ import annotations

import os

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailnet.durable import writeAll
from mailnet.store.interfaces import INBOX, NoSuchFolder, StoreError, TemporaryStoreError
from mailnet.store.maildir.delivery import ioText, storeError

log = Logger()


class Committer:
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
    (:meth:`Disk.place`): the first worker there places, under the folder
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
        return max(1, self.store.threads - 1)

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
        d = self.store.run(self.commitJobs, [job for job, _ in batch])
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
            self.store.pokeJournal(disk.path)  # account listeners (journal.py)
            placed, delta = outcome
            for job, idx, uid in placed:
                uids[(id(job), idx)] = uid
            if placed:
                # The list index reads them in the background (mailnet/store/summaries.py).
                self.store.summariesDelivered(disk.path, [(job.baseFor(idx), uid, job.date, job.size, job.flags)
                                                          for job, idx, uid in placed])
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
                d.errback(storeError(error))
                continue
            value = [(t[0], t[1], uids[(id(job), i)]) for i, t in enumerate(job.targets)]
            if waits:
                defer.DeferredList(waits).addCallback(lambda _, d=d, v=value: d.callback(v))
            else:
                d.callback(value)

    def _failAll(self, failure, batch):
        self.busy -= 1
        if failure.check(OSError):
            log.error("group commit failed: {error}", error=ioText(failure.value))
        else:
            log.failure("group commit failed", failure)
        for job, d in batch:
            if not d.called:
                d.errback(storeError(failure.value))
        self.store.run(self.cleanupJobs, [job for job, _ in batch], True).addErrback(
            lambda f: log.failure("removing delivered tmp files", f)
        )
        self._maybeDispatch()

    # Worker threads

    def commitJobs(self, jobs):
        """
        Thread: make the jobs' files durable, place them into every target
        folder (see above), take failed deliveries back out.
        Returns ``[(disk, (placed, delta) or exception)]``; failed jobs
        carry their error.
        """
        groups = self._prepareJobs(jobs)
        results = []
        try:
            for path, items in groups.items():
                disk = self.store.disks.hold(path)
                try:
                    outcome = disk.place(items)
                finally:
                    self.store.disks.release(disk)
                if isinstance(outcome, BaseException):
                    error = outcome
                    if isinstance(error, OSError):
                        log.error(
                            "maildir {folder}: delivery failed: {error}",
                            folder=disk.label(),
                            error=ioText(error),
                        )
                        error = storeError(error)
                    elif not isinstance(error, StoreError):
                        log.failure(
                            "maildir {folder}: delivery failed",
                            Failure(error, type(error), error.__traceback__),
                            folder=disk.label(),
                        )
                        error = storeError(error)
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
            self.cleanupJobs(jobs)
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
                log.error("maildir: writing a delivery failed: {error}", error=ioText(e))
                job.error = storeError(e)
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
                        self.store.ensureAccount(path if name == INBOX else os.path.dirname(path))
                    if not os.path.isdir(os.path.join(path, "new")):
                        raise NoSuchFolder(name)
                    seen.add(path)
            except StoreError as e:
                job.error = e
                continue
            except OSError as e:
                log.error("maildir: preparing a delivery failed: {error}", error=ioText(e))
                job.error = storeError(e)
                continue
            for idx, (_, _, path) in enumerate(job.targets):
                groups.setdefault(path, []).append((job, idx))
        return groups

    def cleanupJobs(self, jobs, failed=False):
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
            base = job.baseFor(idx)
            for sub in ("new", "cur"):
                try:
                    for name in os.listdir(os.path.join(path, sub)):
                        if name.partition(":")[0] == base:
                            os.unlink(os.path.join(path, sub, name))
                except OSError:
                    pass
