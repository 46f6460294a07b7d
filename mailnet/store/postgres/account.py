"""One account of the PostgreSQL store: its folders, subscriptions, ids and journal."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailnet.store.base import (
    FolderHandle,
    checkFolderCount,
    checkNewFolderName,
    moveInboxMessages,
    normalizeFolderName,
    parentsOf,
)
from mailnet.store.changes import Listeners
from mailnet.store.interfaces import (
    INBOX,
    SPECIAL_USE,
    FolderExists,
    FolderInfo,
    IAccount,
    InvalidFolderName,
    NoSuchFolder,
)
from mailnet.store.postgres import journal, sql
from mailnet.store.postgres import quota as pgquota
from mailnet.store.postgres.journal import CREATED, DESTROYED, EMAIL, MAILBOX, UPDATED
from mailnet.store.postgres.emaillist import PostgresEmailList
from mailnet.store.postgres.folder import PostgresFolder
from mailnet.store.postgres.threadindex import PostgresThreadIndex
from mailnet.store.quota import QuotaUsage, policyOf
from mailnet.store.threads import AccountThreads

log = Logger()


@implementer(IAccount)
class PostgresAccount:
    """
    One user's mail.  Open folder indexes are kept by folder row id while a
    handle is open.  The change journal (journal.py) and the thread index
    (threadindex.py, driven by the toolkit's AccountThreads) are in the
    database, and so is the message list index (listindex.py, read by
    emaillist.py), written with the messages.
    """

    def __init__(self, store, username, accountId):
        self.store = store
        self.db = store.db
        self.username = username
        self.accountId = accountId
        self.limits = store.limits
        self.open = {}  # folder row id -> PostgresFolder
        self.lock = defer.DeferredLock()
        self.keep = store.changesKept
        run = store.runner
        self.threads = AccountThreads(PostgresThreadIndex(self.db, accountId), run)
        self.accountListeners = Listeners()
        self.threads.onIndexed = self._indexed
        self.summaries = PostgresEmailList(self)

    def serial(self, f):
        """Run ``f()`` (returning a Deferred) after the account's earlier writes."""
        return self.lock.run(f)

    # Change journal (mailnet/store/postgres/journal.py)

    def changed(self, rows, told, extra=()):
        """
        After a change whose journal ``rows`` were written with ``told``
        ``(state, types)`` (None: a refresh saw other writers' changes, or
        threads were indexed): add the thread rows, tell the account
        listeners.  Called under :meth:`serial`; Deferred firing with the
        state.
        """
        aid, keep = self.accountId, self.keep

        def txn(conn):
            return journal.writeThreads(conn, aid, rows, self.threads.index, lambda c, e: sql.isLive(c, aid, e), keep)

        def tell(value):
            state, types = value
            # What this process wrote (the change's rows, the Thread rows of
            # this transaction, the threads it indexed) is its own; the rest
            # it only heard of (pushed by the node that made it).
            own = set(types) | set(extra)
            if told is not None:
                own |= told[1]
            types = set(own)
            if told is None and not extra:
                types |= {"Email", "Mailbox"}  # another writer's change to an open folder
            self.accountListeners.tell(self, state, types, own)
            return state

        return self.db.run(txn).addCallback(tell)

    def remoteChange(self):
        """Another node changed this account (listen.py): open folders refresh, listeners are told."""

        def failed(f):
            log.warn("postgres: taking in another node's change failed: {e}", e=f.getErrorMessage())

        for index in list(self.open.values()):
            self.serial(index._refresh).addErrback(failed)
        if not self.open and self.accountListeners:
            self.serial(lambda: self.changed([], None)).addErrback(failed)

    def _indexed(self):
        d = self.serial(lambda: self.changed([], None, {"Thread"}))
        d.addErrback(lambda f: None)  # the journal catches up at the next look

    def currentState(self):
        return self.serial(lambda: self.db.run(
            lambda conn: journal.writeThreads(conn, self.accountId, [], self.threads.index,
                                              lambda c, e: sql.isLive(c, self.accountId, e), self.keep)
        ).addCallback(self._marked))

    def _marked(self, value):
        state, types = value
        if types:
            self.accountListeners.tell(self, state, types)
        return state

    def changesSince(self, state, maxChanges=None):
        if maxChanges is not None and (not isinstance(maxChanges, int) or maxChanges < 1):
            return defer.fail(ValueError("maxChanges must be a positive int or None"))
        d = self.currentState()
        return d.addCallback(lambda _: self.db.run(journal.changes, self.accountId, state, maxChanges))

    def addListener(self, listener):
        self.accountListeners.add(listener)

    def removeListener(self, listener):
        self.accountListeners.remove(listener)

    # Quota (mailnet/store/postgres/quota.py; docs/store.md "Quota")

    def quota(self):
        policy = policyOf(self.store)
        limits = policy.limitsFor(self.username)

        def got(used):
            self.store.setUsage(self.username, used)
            return QuotaUsage(used[0], used[1], limits, policy.warning, policy.grace)

        return self.db.run(pgquota.usage, self.accountId).addCallback(got)

    def checkQuota(self, size, count=1):
        return self.quota().addCallback(lambda usage: usage.check(size, count))

    def quotaWarning(self):
        def claim(usage):
            if not usage.limits.limited:
                return False
            return self.db.run(pgquota.claimWarning, self.accountId, usage.warned)

        return self.quota().addCallback(claim)

    # Folders

    def listFolders(self):
        def q(conn):
            subs = {r[0] for r in conn.execute("SELECT name FROM subscriptions WHERE account = %s", (self.accountId,))}
            names = sorted(sql.folderNames(conn, self.accountId), key=lambda n: (n != INBOX, n))
            return [FolderInfo(n, SPECIAL_USE.get(n), n in subs) for n in names]

        return self.db.run(q)

    def listSubscriptions(self):
        return self.db.run(lambda conn: sorted(r[0] for r in conn.execute(
            "SELECT name FROM subscriptions WHERE account = %s", (self.accountId,))))

    def setSubscribed(self, name, subscribed):
        def q(conn, name):
            if subscribed:
                conn.execute("INSERT INTO subscriptions VALUES (%s, %s) ON CONFLICT DO NOTHING", (self.accountId, name))
            else:
                conn.execute("DELETE FROM subscriptions WHERE account = %s AND name = %s", (self.accountId, name))

        return defer.maybeDeferred(normalizeFolderName, name).addCallback(lambda n: self.db.run(q, n))

    def createFolder(self, name):
        def q(conn, name):
            conn.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (self.accountId,))
            existing = set(sql.folderNames(conn, self.accountId))
            if name in existing:
                raise FolderExists(name)
            checkNewFolderName(name, self.limits)
            missing = [p for p in parentsOf(name) if p not in existing]
            checkFolderCount(len(existing), len(missing) + 1, self.limits)
            rows = []
            for n in missing + [name]:
                journal.row(rows, CREATED, MAILBOX, sql.makeFolder(conn, self.accountId, n)[2])
            return rows, journal.write(conn, self.accountId, rows, self.keep)

        d = defer.maybeDeferred(normalizeFolderName, name).addCallback(lambda n: self.db.run(q, n))
        return d.addCallback(self._told)

    def _told(self, value):
        rows, told = value
        return self.serial(lambda: self.changed(rows, told)).addCallback(lambda _: None)

    def deleteFolder(self, name):
        def q(conn, name):
            if name == INBOX:
                raise InvalidFolderName("INBOX cannot be deleted")
            row = sql.folderRow(conn, self.accountId, name)
            sql.lockFolders(conn, [row[0]])
            msgs = conn.execute("DELETE FROM messages WHERE folder = %s RETURNING email_id, body_hash, size",
                                (row[0],)).fetchall()
            conn.execute("DELETE FROM folders WHERE id = %s", (row[0],))
            pgquota.add(conn, self.accountId, -sum(r[2] for r in msgs), -len(msgs))
            sql.dropBodies(conn, {r[1] for r in msgs})
            rows = []
            for emailId, *_ in msgs:
                journal.row(rows, DESTROYED, EMAIL, emailId)
            journal.row(rows, DESTROYED, MAILBOX, row[2])
            return row[0], (rows, journal.write(conn, self.accountId, rows, self.keep))

        def done(value):
            folderId, told = value
            index = self.open.pop(folderId, None)
            if index is not None:
                index.drop()
            return self._told(told)

        d = defer.maybeDeferred(normalizeFolderName, name).addCallback(lambda n: self.db.run(q, n))
        return d.addCallback(done)

    def renameFolder(self, oldName, newName):
        return defer.maybeDeferred(lambda: (normalizeFolderName(oldName), normalizeFolderName(newName))).addCallback(
            lambda names: self._rename(*names))

    def _rename(self, old, new):
        def q(conn):
            conn.execute("SELECT id FROM accounts WHERE id = %s FOR UPDATE", (self.accountId,))
            existing = set(sql.folderNames(conn, self.accountId))
            if old not in existing:
                raise NoSuchFolder(old)
            if new in existing:
                raise FolderExists(new)
            if new.startswith(old + "/"):
                raise InvalidFolderName(f"cannot rename {old!r} into itself")
            checkNewFolderName(new, self.limits)
            moves = [] if old == INBOX else sorted(n for n in existing if n == old or n.startswith(old + "/"))
            for n in moves:
                if n != old:
                    checkNewFolderName(new + n[len(old):], self.limits)
            missing = [p for p in parentsOf(new) if p not in existing]
            checkFolderCount(len(existing), len(missing) + (old == INBOX), self.limits)
            rows = []
            for p in missing + ([new] if old == INBOX else []):
                journal.row(rows, CREATED, MAILBOX, sql.makeFolder(conn, self.accountId, p)[2])
            renamed = []
            for n in moves:
                target = new + n[len(old):]
                renamed.append(conn.execute("UPDATE folders SET name = %s WHERE account = %s AND name = %s "
                                            "RETURNING id, mailbox_id, name", (target, self.accountId, n)).fetchone())
                conn.execute("UPDATE subscriptions SET name = %s WHERE account = %s AND name = %s",
                             (target, self.accountId, n))
                journal.row(rows, UPDATED, MAILBOX, renamed[-1][1])
            return renamed, (rows, journal.write(conn, self.accountId, rows, self.keep))

        async def go():
            renamed, told = await self.db.run(q)
            for folderId, _, name in renamed:
                index = self.open.get(folderId)
                if index is not None:
                    index.name = name
            await self._told(told)
            if old == INBOX:
                await moveInboxMessages(self, new)  # the folder was made above

        return defer.ensureDeferred(go())

    def openFolder(self, name):
        async def go():
            name_ = normalizeFolderName(name)
            row = await self.db.run(sql.folderRow, self.accountId, name_)
            index = self.open.get(row[0])
            if index is None:
                loaded = await self.db.run(sql.loadFolder, row[0])
                if loaded is None:
                    raise NoSuchFolder(name_)
                index = self.open.get(row[0])  # opened meanwhile by another caller
                if index is None:
                    index = self.open[row[0]] = PostgresFolder(self, loaded)
            return FolderHandle(index, self._release)

        return defer.ensureDeferred(go())

    def _release(self, index):
        if self.open.get(index.folderId) is index:
            del self.open[index.folderId]

    def delivered(self, folderId, rows, told):
        """
        A delivery in this process added messages to a folder (``rows``
        journalled with ``told``): the open index takes them in (listeners
        told), the account listeners are told.  Returns a Deferred.
        """
        async def go():
            index = self.open.get(folderId)
            if index is not None:
                await index.apply(await self.db.run(sql.delta, folderId, index.highestModSeq), own=True)
            await self.changed(rows, told)

        return self.serial(lambda: defer.ensureDeferred(go()))

    # Ids, threads, the message list

    def findEmail(self, emailId):
        if not isinstance(emailId, str) or not emailId:
            return defer.succeed(None)
        return self.db.run(sql.findEmail, self.accountId, emailId).addCallback(
            lambda row: None if row is None else (row[0], row[1]))

    def threadEmails(self, threadId):
        return self.threads.liveEmails(self, threadId)

    def threadOf(self, emailIds):
        return self.threads.threadOf(self, emailIds)

    def emailSummaries(self, emailIds):
        return self.summaries.emailSummaries(emailIds)

    def listEmails(self, mailboxId=None, position=0, limit=None, newestFirst=True):
        return self.summaries.listEmails(mailboxId, position, limit, newestFirst)

    def close(self):
        self.threads.close()
        self.summaries.close()
