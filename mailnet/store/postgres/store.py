"""The PostgreSQL store and its deliveries."""

from __future__ import annotations

import time

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailnet.store.base import FolderLimits, normalizeFlags, normalizeFolderName, parseUsername
from mailnet.store.changes import DEFAULT_KEEP
from mailnet.store.interfaces import (
    INBOX,
    SPECIAL_USE,
    IDelivery,
    IMailStore,
    NoSuchAccount,
    NoSuchFolder,
    StoreError,
    TemporaryStoreError,
)
from mailnet.store.postgres import journal, quota, sql
from mailnet.store.postgres.account import PostgresAccount
from mailnet.store.postgres.db import Database
from mailnet.store.postgres.reader import BodyCache
from mailnet.store.quota import QuotaUsage, policyOf

log = Logger()

# quotaUsage's cache: an entry is read again after this many seconds (another
# node's delivery to an account this process has not loaded is seen then),
# and the cache is emptied when it holds this many users.
USAGE_FRESH = 30.0
USAGE_CACHED = 10_000
# The defaults of [postgres] body_cache_bytes and read_ahead (mailnet/config.py).
BODY_CACHE_BYTES = 32 * 1024 * 1024
READ_AHEAD = 64


@implementer(IMailStore)
class PostgresStore:
    """
    Accounts in a PostgreSQL database (mailnet/store/postgres/schema.py).

    @param db: a :class:`~mailnet.store.postgres.db.Database`.
    @param runner: ``runner(f, *args) -> Deferred`` for blocking work that
        is not a query (the toolkit's in-memory indexes); by default the
        database's thread pool.  Tests pass a synchronous runner (and give
        the Database the same one).
    @param bodyCacheBytes: ``[postgres] body_cache_bytes`` (reader.py).
    @param readAhead: ``[postgres] read_ahead`` (reader.py).
    """

    def __init__(self, db: Database, limits=None, changesKept=DEFAULT_KEEP, runner=None,
                 bodyCacheBytes=BODY_CACHE_BYTES, readAhead=READ_AHEAD):
        self.db = db
        # Small bodies recently read, and batch reads ahead (reader.py).
        self.bodies = BodyCache(bodyCacheBytes)
        self.readAhead = readAhead
        self.limits = limits or FolderLimits()
        self.changesKept = changesKept
        self.runner = runner or db.runner
        self._accounts = {}  # username -> PostgresAccount (in this process)
        self._usage = {}  # username -> (storage, messages, when read): quotaUsage's cache
        self.quotaPolicy = None  # set by the service from [quota] (mailnet/store/quota.py)
        self.listener = None
        self.documentWatchers = []  # callback(name, username): another node changed a shared document; (None, None): resync
        self.sweeper = None  # gc.Sweeper: [postgres] gc_interval

    def listen(self, reactor=None):
        """Hear other nodes' changes (LISTEN/NOTIFY, listen.py) in a thread of its own."""
        from mailnet.store.postgres.listen import Listener

        if reactor is None:
            from twisted.internet import reactor
        self.listener = Listener(self.db, reactor, self.remoteChange, self.resync, onDocument=self.documentChanged)
        self.listener.start()
        # Which connections in pg_stat_activity are this node's (an operator
        # ending a stuck one; the lost-LISTEN test ends this node's).
        log.info("postgres: this node's connections are named {name}; change notifications on {name}-listen",
                 name=self.db.applicationName)
        return self.listener

    def remoteChange(self, accountId):
        """Another node changed the account: its open folders refresh, its listeners are told."""
        for account in list(self._accounts.values()):
            if account.accountId == accountId:
                self._usage.pop(account.username, None)
                account.remoteChange()

    def resync(self):
        """Notifications may have been lost: every account of the process looks again."""
        self._usage.clear()
        for account in list(self._accounts.values()):
            account.remoteChange()
        self.documentChanged(None, None)

    def watchDocuments(self, callback):
        """``callback(name, username)`` when another node changed a shared JMAP document (userdata.py);
        ``callback(None, None)`` when such notifications may have been lost (read every one again)."""
        self.documentWatchers.append(callback)

    def documentChanged(self, name, username):
        for callback in list(self.documentWatchers):
            try:
                callback(name, username)
            except Exception:
                log.failure("postgres: a document watcher failed")

    def _checkName(self, username):
        try:
            parseUsername(username)
        except ValueError as e:
            raise NoSuchAccount(str(e)) from None

    def getAccount(self, username, create=True):
        account = self._accounts.get(username)
        if account is not None:
            return defer.succeed(account)

        def made(aid):
            return self._accounts.setdefault(username, PostgresAccount(self, username, aid))

        d = defer.maybeDeferred(self._checkName, username)
        d.addCallback(lambda _: self.db.run(sql.accountId, username, create, self.changesKept))
        return d.addCallback(made)

    def knownAccount(self, username):
        return self._accounts.get(username)

    def newDelivery(self):
        return PostgresDelivery(self)

    def maildropLock(self, username):
        """
        The POP3 maildrop lock of ``username`` across every node
        (maildroplock.py, :meth:`IMailStore.maildropLock`): Deferred firing
        with a held lock whose ``release()`` closes its connection in a
        worker thread, or None when another session on any node holds it;
        fails with TemporaryStoreError when the database is down.
        """
        from mailnet.store.postgres.maildroplock import tryLock

        d = self.runner(tryLock, self.db, username, self.changesKept)
        return d.addCallback(lambda held: None if held is None else _HeldMaildrop(held, self.runner))

    # Quota (mailnet/store/postgres/quota.py; docs/store.md "Quota")

    def setUsage(self, username, used):
        """A transaction of this process read the account's counter: quotaUsage's cache takes it."""
        if len(self._usage) >= USAGE_CACHED and username not in self._usage:
            self._usage.clear()
        self._usage[username] = (used[0], used[1], time.monotonic())

    def quotaUsage(self, username):
        """
        For SMTP's RCPT check, synchronously: from the cache this process's
        writes keep (another node's change drops the entry, and an entry is
        read again after :data:`USAGE_FRESH` seconds); a miss is one indexed
        query on the reactor thread.  None without limits or when the
        database cannot answer now (the delivery checks nothing then).
        """
        policy = policyOf(self)
        limits = policy.limitsFor(username)
        if not limits.limited:
            return None
        entry = self._usage.get(username)
        if entry is None or time.monotonic() - entry[2] > USAGE_FRESH:
            try:
                self.setUsage(username, self.db.call(quota.usageOf, username, failFast=True))
            except (StoreError, OSError) as e:
                log.warn("postgres: reading the quota usage failed: {e}", e=str(e))
                return None
            entry = self._usage[username]
        return QuotaUsage(entry[0], entry[1], limits, policy.warning, policy.grace)

    def delivered(self, added):
        """
        After a delivery committed: ``added`` is ``[(username, folderId,
        rows, told)]`` (the journal rows of that folder's copy, and the
        account's ``(state, types)``); open folders and account listeners
        of this process take them in.  Returns a Deferred.
        """
        ds = []
        for username, folderId, rows, told in added:
            account = self._accounts.get(username)
            if account is None:
                continue
            d = account.delivered(folderId, rows, told)
            d.addErrback(lambda f: log.warn("postgres: a delivery's notification failed: {e}", e=f.getErrorMessage()))
            ds.append(d)
        return defer.gatherResults(ds) if ds else defer.succeed(None)

    def close(self):
        if self.sweeper is not None:
            self.sweeper.stop()
            self.sweeper = None
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        accounts, self._accounts = self._accounts, {}
        for account in accounts.values():
            account.close()
        self.db.close()


@implementer(IDelivery)
class PostgresDelivery:
    """
    One message for one or more mailboxes: spooled (hashed as it comes, in
    memory up to 1 MiB, in an unlinked temporary file beyond), then one
    transaction stores the body once and a message row per mailbox.
    """

    def __init__(self, store):
        self._store = store
        self._recipients = []
        self._spool = sql.Spool()
        self._done = False

    def addRecipient(self, username, folder=INBOX):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        name = normalizeFolderName(folder)
        try:
            parseUsername(username)
        except ValueError as e:
            raise NoSuchAccount(str(e)) from None
        if name != INBOX:
            # One indexed query on the reactor thread, for a folder other
            # than INBOX only (an address extension, a Sieve-like rule).
            exists = self._store.db.call(sql.folderExists, username, name, failFast=True)
            if exists is None:
                exists = name in SPECIAL_USE  # made with the account
            if not exists:
                raise NoSuchFolder(folder)
        if (username, name) not in self._recipients:
            self._recipients.append((username, name))

    def write(self, data):
        if self._done:
            raise StoreError("delivery already committed or aborted")
        try:
            self._spool.write(bytes(data))
        except OSError as e:
            raise TemporaryStoreError(f"spooling the message failed: {e.strerror}") from None

    def commit(self, internalDate=None, flags=()):
        if self._done:
            return defer.fail(StoreError("delivery already committed or aborted"))
        self._done = True
        flags = normalizeFlags(flags)
        date = time.time() if internalDate is None else internalDate
        spool = self._spool
        recipients = list(self._recipients)

        keep = self._store.changesKept

        def txn(conn):
            h = sql.storeBody(conn, spool, self._store.db.objects)
            targets = []
            for username, name in recipients:
                aid = sql.accountId(conn, username, True, keep)
                row = sql.folderRow(conn, aid, name)
                targets.append((row[0], username, aid, name))
            sql.lockFolders(conn, [t[0] for t in targets])
            quota.lock(conn, [t[2] for t in targets])  # the counters, in account order
            out, copies, byAccount = [], [], {}
            for folderId, username, aid, name in targets:
                rows = []
                [row] = sql.insertMessages(conn, folderId, aid, [(h, spool.size, flags, date, None)], rows)
                out.append((username, name, row[0]))
                copies.append((username, aid, folderId, rows))
                byAccount.setdefault(aid, []).extend(rows)
            # The accounts' journals, in account order (two deliveries never deadlock).
            told = {aid: journal.write(conn, aid, byAccount[aid], keep) for aid in sorted(byAccount)}
            used = {username: quota.usage(conn, aid) for _, username, aid, _ in targets}
            return out, [(username, folderId, rows, told[aid]) for username, aid, folderId, rows in copies], used

        def done(value):
            out, added, used = value
            for username, counted in used.items():
                self._store.setUsage(username, counted)
            return self._store.delivered(added).addCallback(lambda _: out)

        def cleanup(result):
            spool.close()
            return result

        return self._store.db.run(txn).addBoth(cleanup).addCallback(done)

    def abort(self):
        if not self._done:
            self._done = True
            self._spool.close()


def makeStore(config):
    """The ``postgres`` backend factory (``[store] backend = "postgres"``): refuses an old schema."""
    from mailnet.config import ConfigError
    from mailnet.store.postgres.db import openChecked

    objects = None
    if config.postgres.bodies == "s3":
        from mailnet.store.postgres import objects as s3

        try:
            objects = s3.fromConfig(config)
            objects.check()
        except ImportError:
            raise ConfigError('[postgres] bodies = "s3" needs boto3 (pip install mailnet[s3])') from None
        except OSError as e:
            raise ConfigError(f"[postgres] s3_secret_file: {e.strerror}") from None
        except TemporaryStoreError:
            raise ConfigError("[postgres] the object store cannot be reached or has no bucket "
                              f"{config.postgres.s3_bucket!r}; check s3_endpoint, s3_bucket and the key") from None
    db = openChecked(config, objects=objects)
    store = PostgresStore(db, FolderLimits.fromConfig(config), changesKept=config.store.changes_kept,
                          bodyCacheBytes=config.postgres.body_cache_bytes, readAhead=config.postgres.read_ahead)
    store.listen()
    if config.postgres.gc_interval > 0:
        from twisted.internet import reactor

        from mailnet.store.postgres.gc import Sweeper

        store.sweeper = Sweeper(db, objects, config.postgres.gc_interval, config.postgres.gc_grace, reactor)
        store.sweeper.start()
    return store


class _HeldMaildrop:
    """A held :class:`~mailnet.store.postgres.maildroplock.MaildropLock` released off the reactor."""

    def __init__(self, held, runner):
        self._held, self._runner = held, runner

    @property
    def held(self):
        return self._held is not None and self._held.held

    def release(self):
        held, self._held = self._held, None
        if held is None:
            return defer.succeed(None)
        return self._runner(held.release)
