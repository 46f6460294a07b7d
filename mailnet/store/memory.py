"""
An in-memory mail store, for tests and embedding.  Everything is lost at exit.

All methods complete synchronously; those documented as returning a Deferred
return an already-fired one.  Behaviour matches the maildir backend (the
conformance suite, :mod:`mailnet.store.conformance`, runs over both).

Use ``[store] backend = "memory"`` or :func:`makeStore`.
"""

from __future__ import annotations

import io
import itertools
import time

from twisted.internet import defer
from zope.interface import implementer

from mailnet.store.base import (
    FolderHandle,
    FolderLimits,
    SharedIndex,
    checkFolderCount,
    checkNewFolderName,
    flagChanges,
    newUidValidity,
    normalizeFlags,
    normalizeFolderName,
    parentsOf,
    parseUsername,
)
from mailnet.store.changes import CREATED, DEFAULT_KEEP, DESTROYED, EMAIL, MAILBOX, UPDATED, ChangeLog, Listeners
from mailnet.store.interfaces import (
    INBOX,
    SEEN,
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
    ProcessMaildropLocks,
    StoreError,
)
from mailnet.store.quota import policyOf
from mailnet.store.summaries import AccountSummaries, SummaryIndex
from mailnet.store.threads import AccountThreads, ThreadIndex


def makeStore(config):
    """The ``memory`` backend factory (``[store] backend = "memory"``)."""
    return MemoryStore(FolderLimits.fromConfig(config), changesKept=config.store.changes_kept)


# Email and mailbox ids: unique in the process (the store lives no longer).
_ids = itertools.count(1)


def _mailboxIdOf(folder):
    # (Tests take the ids away to play a store that has none.)
    return getattr(folder, "mailboxId", None)


def _readSource(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return source.read()


class _MemoryFolder(SharedIndex):
    """One folder: its messages and the index every handle shares."""

    def __init__(self, account, name):
        super().__init__()
        self.account = account
        self.name = name
        self.uidValidity = newUidValidity()
        self.mailboxId = f"F{next(_ids)}"
        self.uidNext = 1
        self.highestModSeq = 1
        self.infos = {}  # uid -> MessageInfo, ascending uid (insertion order)
        self.bodies = {}  # uid -> bytes
        self.ids = {}  # uid -> email id
        self.expunged = []  # (modseq, uid), ascending
        self.deleted = False

    # Reading

    def messages(self):
        return list(self.infos.values())

    def get(self, uid):
        return self.infos.get(uid)

    def refresh(self):
        return None

    def openMessage(self, uid):
        try:
            return io.BytesIO(self.bodies[uid])
        except KeyError:
            raise NoSuchMessage(uid) from None

    def expungedSince(self, modseq):
        return sorted(uid for m, uid in self.expunged if m > modseq)

    def emailIds(self, uids):
        ids = self.ids
        return {uid: ids[uid] for uid in uids if uid in ids}

    def threadIds(self, uids):
        return self.account.threads.threadIds(self, uids)

    # Changing

    def addMessages(self, items, emailIds=None):
        """
        Add (body, flags, internalDate) items; one modseq for the batch.
        ``emailIds``: the ids they keep (a MOVE), else new ones.
        """
        self.highestModSeq += 1
        modseq = self.highestModSeq
        infos = []
        emails = self.account.emails
        for n, (body, flags, date) in enumerate(items):
            uid = self.uidNext
            self.uidNext += 1
            info = MessageInfo(
                uid=uid,
                flags=frozenset(flags),
                internalDate=float(time.time() if date is None else date),
                size=len(body),
                modseq=modseq,
            )
            self.infos[uid] = info
            self.bodies[uid] = body
            emailId = self.ids[uid] = emailIds[n] if emailIds else f"M{next(_ids)}"
            emails[emailId] = (self, uid)
            infos.append(info)
        self.notify("messagesAdded", infos)
        kind = UPDATED if emailIds else CREATED
        self.account.recordChanges([(kind, self.ids[i.uid], bool(emailIds)) for i in infos],
                                   [(UPDATED, _mailboxIdOf(self), True)])
        return infos

    def append(self, source, flags, internalDate):
        return self.addMessages([(_readSource(source), flags, internalDate)])[0].uid

    def setFlags(self, uids, flags, mode, unchangedSince):
        todo, failed = flagChanges(self.infos, uids, flags, mode, unchangedSince)
        changed = []
        if todo:
            self.highestModSeq += 1
            seen = False
            for info, new in todo:
                seen |= (SEEN in info.flags) != (SEEN in new)
                info = MessageInfo(
                    uid=info.uid,
                    flags=new,
                    internalDate=info.internalDate,
                    size=info.size,
                    modseq=self.highestModSeq,
                )
                self.infos[info.uid] = info
                changed.append(info)
            self.notify("flagsChanged", changed)
            self.account.recordChanges([(UPDATED, self.ids[i.uid], False) for i in changed],
                                       [(UPDATED, _mailboxIdOf(self), True)] if seen else [])
        return changed, failed

    def expunge(self, uids):
        removed = [uid for uid in uids if uid in self.infos]
        if removed:
            self.highestModSeq += 1
            gone = []
            for uid in removed:
                del self.infos[uid]
                del self.bodies[uid]
                emailId = self.ids.get(uid)
                self._forgetId(uid)
                self.expunged.append((self.highestModSeq, uid))
                # A MOVE's source: the message lives on elsewhere (updated).
                gone.append((UPDATED, emailId, True) if emailId in self.account.emails else (DESTROYED, emailId, False))
            self.notify("messagesExpunged", removed)
            self.account.recordChanges(gone, [(UPDATED, _mailboxIdOf(self), True)])
        return removed

    def _forgetId(self, uid):
        emailId = self.ids.pop(uid, None)
        if self.account.emails.get(emailId) == (self, uid):
            del self.account.emails[emailId]

    def copyTo(self, uids, dest, move=False):
        present = [uid for uid in uids if uid in self.infos]
        if not present:
            return []
        items = [
            (self.bodies[uid], self.infos[uid].flags, self.infos[uid].internalDate)
            for uid in present
        ]
        # A COPY is a new message (new id); a MOVE keeps the id.
        infos = dest.addMessages(items, [self.ids[uid] for uid in present] if move else None)
        return [(src, info.uid) for src, info in zip(present, infos)]

    def moveTo(self, uids, dest):
        pairs = self.copyTo(uids, dest, move=True)
        self.expunge([src for src, _ in pairs])
        return pairs

    def drop(self):
        """The folder was deleted: tell open handles its messages are gone."""
        self.deleted = True
        uids = list(self.infos)
        gone = [(DESTROYED, self.ids[uid], False) for uid in uids if uid in self.ids]
        for uid in uids:
            self._forgetId(uid)
        self.infos.clear()
        self.bodies.clear()
        self.notify("messagesExpunged", uids)
        self.account.recordChanges(gone, [(DESTROYED, _mailboxIdOf(self), False)])


@implementer(IAccount)
class MemoryAccount:
    def __init__(self, username, limits=None, changesKept=DEFAULT_KEEP):
        self.username = username
        self.limits = limits or FolderLimits()
        self.folders = {}
        self.emails = {}  # email id -> (_MemoryFolder, uid)
        self.threads = AccountThreads(ThreadIndex(None), lambda f, *a: defer.maybeDeferred(f, *a))
        # Account state and changes (mailnet/store/changes.py), in memory.
        self.changeLog = ChangeLog(None, changesKept)
        self.accountListeners = Listeners()
        self.threads.onIndexed = lambda: self.recordChanges([], [])
        # The message list index, in memory; it catches up when asked (a folder's stamp is exact here).
        self.summaries = AccountSummaries(SummaryIndex(None), self, self._stamps,
                                          lambda f, *a: defer.maybeDeferred(f, *a), threads=self.threads)
        self.subscriptions = set()
        self._make(INBOX)
        for name in SPECIAL_USE:
            self._make(name)
        self.subscriptions.update(self.folders)

    def _make(self, name):
        folder = self.folders[name] = _MemoryFolder(self, name)
        self.recordChanges([], [(CREATED, _mailboxIdOf(folder), False)])
        return folder

    def recordChanges(self, emails, mailboxes):
        """
        Journal changes: ``emails`` are ``(kind, emailId, moved)``,
        ``mailboxes`` ``(kind, mailboxId, countsOnly)``; thread rows are
        added from the thread index.  Listeners are told.  Returns the state.
        """

        def build(txn):
            for kind, emailId, moved in emails:
                if emailId is not None:
                    txn.emit(kind, EMAIL, emailId, moved)
            for kind, mailboxId, counts in mailboxes:
                if mailboxId is not None:
                    txn.emit(kind, MAILBOX, mailboxId, counts)

        state, types = self.changeLog.record(build, self.threads.index, lambda db, e: e in self.emails)
        self.accountListeners.tell(self, state, types)
        return state

    def currentState(self):
        return defer.maybeDeferred(self.recordChanges, [], [])

    def changesSince(self, state, maxChanges=None):
        def answer():
            self.recordChanges([], [])
            return self.changeLog.changes(state, maxChanges)

        return defer.maybeDeferred(answer)

    def addListener(self, listener):
        self.accountListeners.add(listener)

    def removeListener(self, listener):
        self.accountListeners.remove(listener)

    def _folder(self, name):
        try:
            return self.folders[normalizeFolderName(name)]
        except KeyError:
            raise NoSuchFolder(name) from None

    def listFolders(self):
        def key(name):
            return (name != INBOX, name)

        return defer.succeed(
            [
                FolderInfo(
                    name=name,
                    specialUse=SPECIAL_USE.get(name),
                    subscribed=name in self.subscriptions,
                )
                for name in sorted(self.folders, key=key)
            ]
        )

    def createFolder(self, name):
        return defer.maybeDeferred(self._createFolder, name)

    def _createFolder(self, name):
        name = normalizeFolderName(name)
        if name in self.folders:
            raise FolderExists(name)
        checkNewFolderName(name, self.limits)
        missing = [p for p in parentsOf(name) if p not in self.folders]
        checkFolderCount(len(self.folders), len(missing) + 1, self.limits)
        for parent in parentsOf(name):
            if parent not in self.folders:
                self._make(parent)
        self._make(name)

    def deleteFolder(self, name):
        return defer.maybeDeferred(self._deleteFolder, name)

    def _deleteFolder(self, name):
        name = normalizeFolderName(name)
        if name == INBOX:
            raise InvalidFolderName("INBOX cannot be deleted")
        folder = self._folder(name)
        del self.folders[name]
        folder.drop()

    def renameFolder(self, oldName, newName):
        return defer.maybeDeferred(self._renameFolder, oldName, newName)

    def _renameFolder(self, oldName, newName):
        old = normalizeFolderName(oldName)
        new = normalizeFolderName(newName)
        source = self._folder(old)
        if new in self.folders:
            raise FolderExists(new)
        if new.startswith(old + "/"):
            raise InvalidFolderName(f"cannot rename {old!r} into itself")
        checkNewFolderName(new, self.limits)
        if old != INBOX:
            for name in self.folders:
                if name.startswith(old + "/"):
                    checkNewFolderName(new + name[len(old):], self.limits)
        missing = [p for p in parentsOf(new) if p not in self.folders]
        checkFolderCount(len(self.folders), len(missing) + (old == INBOX), self.limits)
        for parent in parentsOf(new):
            if parent not in self.folders:
                self._make(parent)
        if old == INBOX:
            # RFC 3501 s6.3.5: a new folder gets INBOX's messages; INBOX stays,
            # empty, and its children are not renamed.
            target = self._make(new)
            source.moveTo(list(source.infos), target)
            return
        moves = [
            n for n in self.folders if n == old or n.startswith(old + "/")
        ]
        for name in moves:
            folder = self.folders.pop(name)
            folder.name = new + name[len(old):]
            self.folders[folder.name] = folder
            if name in self.subscriptions:
                self.subscriptions.discard(name)
                self.subscriptions.add(folder.name)
        self.recordChanges([], [(UPDATED, _mailboxIdOf(self.folders[new + n[len(old):]]), False) for n in moves])

    def listSubscriptions(self):
        return defer.succeed(sorted(self.subscriptions))

    def setSubscribed(self, name, subscribed):
        return defer.maybeDeferred(self._setSubscribed, name, subscribed)

    def _setSubscribed(self, name, subscribed):
        name = normalizeFolderName(name)
        if subscribed:
            self.subscriptions.add(name)
        else:
            self.subscriptions.discard(name)

    def findEmail(self, emailId):
        found = self.emails.get(emailId) if isinstance(emailId, str) else None
        if found is None:
            return defer.succeed(None)
        folder, uid = found
        return defer.succeed((folder.name, uid))

    def threadEmails(self, threadId):
        return self.threads.liveEmails(self, threadId)

    def threadOf(self, emailIds):
        return self.threads.threadOf(self, emailIds)

    # Quota (mailnet/store/quota.py): counted from the folders; the
    # warning mark lives as long as the store.

    quotaWarned = False
    store = None

    def usage(self):
        policy = policyOf(self.store)
        storage = sum(i.size for f in self.folders.values() for i in f.infos.values())
        messages = sum(len(f.infos) for f in self.folders.values())
        return policy.usage(self.username, storage, messages)

    def quota(self):
        return defer.maybeDeferred(self.usage)

    def checkQuota(self, size, count=1):
        return defer.maybeDeferred(lambda: self.usage().check(size, count))

    def quotaWarning(self):
        def claim():
            usage = self.usage()
            if not usage.warned:
                self.quotaWarned = False
                return False
            if self.quotaWarned or not usage.limits.limited:
                return False
            self.quotaWarned = True
            return True

        return defer.maybeDeferred(claim)

    def openFolder(self, name):
        return defer.maybeDeferred(lambda: FolderHandle(self._folder(name)))

    def _stamps(self):
        return {name: "%s:%d:%d:%d" % (f.mailboxId, f.uidValidity, f.uidNext, f.highestModSeq)
                for name, f in self.folders.items()}

    def emailSummaries(self, emailIds):
        return self.summaries.emailSummaries(emailIds)

    def listEmails(self, mailboxId=None, position=0, limit=None, newestFirst=True):
        return self.summaries.listEmails(mailboxId, position, limit, newestFirst)


@implementer(IDelivery)
class MemoryDelivery:
    def __init__(self, store):
        self._store = store
        self._recipients = []  # (username, folder name), in order
        self._chunks = []
        self._done = False

    def addRecipient(self, username, folder=INBOX):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        name = normalizeFolderName(folder)
        account = self._store.knownAccount(username)
        if account is None:
            try:
                parseUsername(username)
            except ValueError as e:
                raise NoSuchAccount(str(e)) from None
            if name != INBOX and name not in SPECIAL_USE:
                raise NoSuchFolder(folder)
        elif name not in account.folders:
            raise NoSuchFolder(folder)
        if (username, name) not in self._recipients:
            self._recipients.append((username, name))

    def write(self, data):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        self._chunks.append(bytes(data))

    def commit(self, internalDate=None, flags=()):
        return defer.maybeDeferred(self._commit, internalDate, flags)

    def _commit(self, internalDate, flags):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        self._done = True
        body = b"".join(self._chunks)
        self._chunks = []
        flags = normalizeFlags(flags)
        date = time.time() if internalDate is None else internalDate
        # Check every target first so that a failure leaves nothing visible.
        targets = []
        for username, name in self._recipients:
            account = self._store.accountFor(username, create=True)
            folder = account.folders.get(name)
            if folder is None:
                raise NoSuchFolder(name)
            targets.append((username, name, folder))
        result = []
        for username, name, folder in targets:
            info = folder.addMessages([(body, flags, date)])[0]
            result.append((username, name, info.uid))
        return result

    def abort(self):
        self._done = True
        self._chunks = []


@implementer(IMailStore)
class MemoryStore:
    """Accounts in a dict; see the module docstring."""

    def __init__(self, limits=None, changesKept=DEFAULT_KEEP):
        self._accounts = {}
        self.limits = limits or FolderLimits()
        self.changesKept = changesKept
        self.maildropLock = ProcessMaildropLocks().acquire  # one process: RFC 1939 s8's lock in memory

    def knownAccount(self, username):
        """The account if it exists, else None."""
        return self._accounts.get(username)

    def accountFor(self, username, create):
        """The account; made when missing and ``create``."""
        account = self._accounts.get(username)
        if account is None:
            if not create:
                raise NoSuchAccount(username)
            try:
                parseUsername(username)
            except ValueError as e:
                raise NoSuchAccount(str(e)) from None
            account = self._accounts[username] = MemoryAccount(username, self.limits, self.changesKept)
            account.store = self
        return account

    quotaPolicy = None  # set by the service from [quota] (mailnet/store/quota.py)

    def quotaUsage(self, username):
        policy = policyOf(self)
        if not policy.limitsFor(username).limited:
            return None  # nothing to check: no sum on the delivery path
        account = self._accounts.get(username)
        if account is None:
            return policy.usage(username, 0, 0)
        return account.usage()

    def getAccount(self, username, create=True):
        return defer.maybeDeferred(self.accountFor, username, create)

    def newDelivery(self):
        return MemoryDelivery(self)

    def close(self):
        return None
