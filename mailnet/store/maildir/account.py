"""A Maildir++ account: its folders and subscriptions."""

from __future__ import annotations

import os
import secrets
import shutil

from twisted.internet import defer
from zope.interface import implementer

from mailnet.durable import fsyncDir
from mailnet.store.base import checkFolderCount, checkNewFolderName, moveInboxMessages, normalizeFolderName, parentsOf
from mailnet.store.interfaces import (
    INBOX,
    SPECIAL_USE,
    FolderExists,
    FolderInfo,
    IAccount,
    InvalidFolderName,
    NoSuchFolder,
)
from mailnet.store.maildir.layout import (
    DELETED_PREFIX,
    NEW_PREFIX,
    folderDirName,
    folderNameOf,
    makeFolderFiles,
    readSubscriptions,
    writeSubscriptions,
)
from mailnet.store.maildir.locate import EmailLocator
from mailnet.store.quota import QuotaUsage, policyOf


@implementer(IAccount)
class MaildirAccount:
    """One account: INBOX is its directory, other folders ``.Name`` in it."""

    def __init__(self, store, username, path):
        self.store = store
        self.username = username
        self.path = path
        self.locator = EmailLocator(store, path)

    def _folderPath(self, name):
        name = normalizeFolderName(name)
        return name, os.path.join(self.path, folderDirName(name)) if name != INBOX else self.path

    def listFolders(self):
        return self.store.run(self._listFolders)

    def _listFolders(self):
        names = []
        for entry in os.scandir(self.path):
            if entry.name[:1] != "." or not entry.is_dir():
                continue
            name = folderNameOf(entry.name)
            if name is not None:
                names.append(name)
        subscribed = set(readSubscriptions(self.path))
        names.sort()
        return [FolderInfo(INBOX, None, INBOX in subscribed)] + [
            FolderInfo(n, SPECIAL_USE.get(n), n in subscribed) for n in names
        ]

    def createFolder(self, name):
        d = defer.maybeDeferred(self._folderPath, name).addCallback(
            lambda np: self.store.run(self._createFolder, *np)
        )
        return d.addCallback(self._poke)

    def _poke(self, value):
        """After a change of the folder list: account listeners (journal.py)."""
        self.store.pokeJournal(self.path)
        return value

    def _createFolder(self, name, path):
        with self.store.accountLock(self.path):
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
            makeFolderFiles(tmp, isInbox=False)
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
        return self.store.run(self._deleteFolderThread, name, path).addCallback(_dropIndex).addCallback(self._poke)

    def _deleteFolderThread(self, name, path):
        with self.store.accountLock(self.path):
            if not os.path.isdir(path):
                raise NoSuchFolder(name)
            disk = self.store.disks.get(path)
            try:
                with disk.locked():
                    trash = os.path.join(self.path, DELETED_PREFIX + secrets.token_hex(6))
                    os.rename(path, trash)
                    fsyncDir(self.path)
                    disk.deleted = True
                    disk.full = None
            finally:
                self.store.disks.forget(disk)
            shutil.rmtree(trash, ignore_errors=True)
            self.store.quota.invalidate(self.path)  # maildirsize: recount next time
            return disk

    def renameFolder(self, oldName, newName):
        def paths():
            return self._folderPath(oldName), self._folderPath(newName)

        d = defer.maybeDeferred(paths)
        d.addCallback(lambda p: self._rename(p[0], p[1]))
        return d.addCallback(self._poke)

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
        d = self.store.run(self._renameThread, oldName, oldPath, newName, newPath)
        d.addCallback(_renameIndexes)
        return d

    def _renameThread(self, oldName, oldPath, newName, newPath):
        with self.store.accountLock(self.path):
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
            disks = self.store.disks.under(self.path, [m[0] for m in moves])
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
                    self.store.disks.rekey(disk, os.path.join(self.path, target))
                    renamed.append((disk, folderNameOf(target)))
            finally:
                for disk in disks:
                    disk.lock.release()
            # Subscriptions follow the folders.
            subs = readSubscriptions(self.path)
            changed = False
            out = []
            for s in subs:
                if s == oldName or s.startswith(oldName + "/"):
                    s = newName + s[len(oldName):]
                    changed = True
                out.append(s)
            if changed:
                writeSubscriptions(self.path, out)
            return renamed

    def _renameInbox(self, newName, newPath):
        """RFC 3501 s6.3.5: a new folder gets INBOX's messages."""
        return self.createFolder(newName).addCallback(lambda _: moveInboxMessages(self, newName))

    def setSubscribed(self, name, subscribed):
        return defer.maybeDeferred(normalizeFolderName, name).addCallback(
            lambda n: self.store.run(self._setSubscribed, n, subscribed)
        )

    def listSubscriptions(self):
        return self.store.run(lambda: list(dict.fromkeys(readSubscriptions(self.path))))

    def _setSubscribed(self, name, subscribed):
        with self.store.accountLock(self.path):
            names = readSubscriptions(self.path)
            present = name in names
            if subscribed and not present:
                names.append(name)
            elif not subscribed and present:
                names = [n for n in names if n != name]
            else:
                return
            writeSubscriptions(self.path, names)

    def findEmail(self, emailId):
        return self.store.run(self.locator.find, emailId)

    def threadEmails(self, threadId):
        return self.store.threadsAt(self.path).liveEmails(self, threadId)

    def threadOf(self, emailIds):
        return self.store.threadsAt(self.path).threadOf(self, emailIds)

    # Account state and changes (journal.py)

    def currentState(self):
        return self.store.journalAt(self).update()

    def changesSince(self, state, maxChanges=None):
        journal = self.store.journalAt(self)
        return journal.update().addCallback(lambda _: self.store.run(journal.log.changes, state, maxChanges))

    def addListener(self, listener):
        self.store.journalAt(self).addListener(listener)

    def removeListener(self, listener):
        self.store.journalAt(self).removeListener(listener)

    # Quota (maildirsize: mailnet/store/maildir/quota.py)

    def quota(self):
        policy = policyOf(self.store)
        limits = policy.limitsFor(self.username)
        d = self.store.run(self.store.quota.usage, self.path, limits)
        return d.addCallback(lambda used: QuotaUsage(used[0], used[1], limits, policy.warning, policy.grace))

    def checkQuota(self, size, count=1):
        if not policyOf(self.store).limitsFor(self.username).limited:
            # Nothing to check against: no usage (for a user without
            # limits that is a scan of the whole account in a worker
            # thread, at every APPEND and COPY).
            return defer.succeed(None)
        return self.quota().addCallback(lambda usage: usage.check(size, count))

    def quotaWarning(self):
        if not policyOf(self.store).limitsFor(self.username).limited:
            return defer.succeed(False)  # no limit, no warning (and no scan)

        def claim(usage):
            if not usage.limits.limited:
                return False
            return self.store.run(self.store.quota.claimWarning, self.path, usage.warned)

        return self.quota().addCallback(claim)

    def openFolder(self, name):
        return defer.maybeDeferred(self._folderPath, name).addCallback(
            lambda np: self.store.openFolderAt(np[0], np[1])
        )

    def emailSummaries(self, emailIds):
        return self.store.summariesAt(self.path).emailSummaries(emailIds)

    def listEmails(self, mailboxId=None, position=0, limit=None, newestFirst=True):
        return self.store.summariesAt(self.path).listEmails(mailboxId, position, limit, newestFirst)


def _dropIndex(disk):
    """The folder was deleted: its open handles see every message go."""
    index = disk.index
    if index is not None:
        disk.index = None
        index.drop()


def _renameIndexes(renamed):
    """Open folders that were renamed keep their index under the new name."""
    for disk, newName in renamed:
        if disk.index is not None and newName is not None:
            disk.index.name = newName
