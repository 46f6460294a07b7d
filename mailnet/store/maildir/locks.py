"""Taking a folder's locks: the in-process lock, then Dovecot's dotlock."""

from __future__ import annotations

import sys

from mailnet.store.interfaces import NoSuchFolder, StoreError
from mailnet.store.maildir import dotlock


class Locked:
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
            self.dotlock = dotlock.acquire(self.disk.uidlist.path)
        except FileNotFoundError:
            self.disk.lock.release()
            raise NoSuchFolder(self.disk.folderName) from None
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


class lockAll:
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
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc):
        while self.entered:
            self.entered.pop().__exit__(*exc)
        return False
