"""
One open folder of the PostgreSQL store: the in-memory snapshot every
handle shares (IFolder's metadata is synchronous), kept current from the
database.

Every operation is one transaction that locks the folder row, does its
change, writes its rows of the account's change journal (journal.py), and
reads back everything that changed in the folder since the snapshot's
modseq (its own change and any other process's): the reactor then applies
that *delta* to the snapshot and tells the folder's and the account's
listeners.  :meth:`refresh` reads the same delta without a change.  Writes of one account are serialized in the process (a
DeferredLock); between processes the folder row lock orders them, so
modseqs and UIDs come out in commit order and a delta read with
``modseq > known`` misses nothing.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mailnet.store.base import SharedIndex, applyFlags
from mailnet.store.interfaces import SEEN, MessageInfo, NoSuchMessage
from mailnet.store.postgres import journal, quota, sql
from mailnet.store.postgres.journal import EMAIL, MAILBOX, UPDATED
from mailnet.store.postgres.reader import FolderReader

log = Logger()


def _info(row):
    uid, _, flags, date, size, modseq = row
    return MessageInfo(uid=uid, flags=frozenset(flags), internalDate=date, size=size, modseq=modseq)


class PostgresFolder(SharedIndex):
    """The shared index of one folder (see the module docstring)."""

    def __init__(self, account, loaded):
        super().__init__()
        self.account = account
        self.db = account.db
        row, msgs, gone = loaded
        self.folderId = row[0]
        self.name = row[1]
        self.mailboxId = row[2]
        self.uidValidity = row[3]
        self.uidNext = row[4]
        self.highestModSeq = row[5]
        self.firstRecentUid = row[6]
        self.deleted = False
        self.infos = {r[0]: _info(r) for r in msgs}
        self.ids = {r[0]: r[1] for r in msgs}
        # QRESYNC: expunged (modseq, uid), and the modseq below which we cannot tell.
        self.expunged = sorted(gone[:sql.EXPUNGED_KEPT])
        self.expungedFloor = gone[sql.EXPUNGED_KEPT][0] if len(gone) > sql.EXPUNGED_KEPT else 0
        self.gone = {uid for _, uid in self.expunged}
        store = account.store
        self.reader = FolderReader(self.db, store.bodies, self.folderId, store.readAhead)

    # Reading (synchronous, from the snapshot)

    def messages(self):
        return list(self.infos.values())

    def get(self, uid):
        return self.infos.get(uid)

    def emailIds(self, uids):
        ids = self.ids
        return {uid: ids[uid] for uid in uids if uid in ids}

    def threadIds(self, uids):
        return self.account.threads.threadIds(self, uids)

    def expungedSince(self, modseq):
        if modseq < self.expungedFloor:
            return None
        return sorted(uid for m, uid in self.expunged if m > modseq)

    def openMessage(self, uid):
        info = self.infos.get(uid)
        if info is None:
            raise NoSuchMessage(uid)
        return self.reader.open(uid, info.size)

    def prefetch(self, uids):
        """Read the small bodies of ``uids`` ahead, a batch per query (reader.py)."""
        infos = self.infos
        self.reader.prefetch([infos[uid] for uid in uids if uid in infos])

    def saveRecent(self):
        d = self.db.run(_saveRecent, self.folderId, self.firstRecentUid)
        d.addErrback(lambda f: log.warn("postgres: \\Recent of a folder not saved: {e}", e=f.getErrorMessage()))

    # Changing: one locked transaction each (the change, its journal rows,
    # the delta), then the delta applied on the reactor

    def refresh(self):
        # Before every IMAP command: mostly nothing changed, which the
        # folder row alone says (one statement, no transaction, not queued
        # behind the account's writes); else the delta, in turn.
        def look(row):
            if (row is not None and row[1] == self.name and row[4] <= self.uidNext
                    and row[5] <= self.highestModSeq and row[6] <= self.firstRecentUid):
                return None
            return self.account.serial(self._refresh)

        return self.db.read(sql.folderById, self.folderId).addCallback(look)

    def _refresh(self):
        return self.db.run(sql.delta, self.folderId, self.highestModSeq).addCallback(self.apply)

    def _write(self, change, *folders):
        """
        ``change(conn, rows)`` in one transaction with the journal write and
        the deltas of ``folders`` (this one first); the deltas applied, the
        account told; fires with what ``change`` returned.
        """
        folders = folders or (self,)
        aid, keep = self.account.accountId, self.account.keep

        def txn(conn, sinces):
            rows = []
            answer = change(conn, rows)
            told = journal.write(conn, aid, rows, keep)
            return answer, rows, told, [sql.delta(conn, f.folderId, since, isolate=False)
                                        for f, since in zip(folders, sinces)], quota.usage(conn, aid)

        async def go():
            answer, rows, told, deltas, used = await self.db.run(txn, [f.highestModSeq for f in folders])
            self.account.store.setUsage(self.account.username, used)
            for f, found in zip(reversed(folders), reversed(deltas)):
                await f.apply(found, own=True)
            await self.account.changed(rows, told)
            return answer

        return self.account.serial(lambda: defer.ensureDeferred(go()))

    def append(self, source, flags, internalDate):
        spool = sql.Spool.of(source)
        date = _now() if internalDate is None else internalDate

        def change(conn, rows):
            h = sql.storeBody(conn, spool, self.db.objects)
            new = sql.insertMessages(conn, self.folderId, self.account.accountId,
                                     [(h, spool.size, flags, date, None)], rows)
            return new[0][0]

        def done(result):
            spool.close()
            return result

        return self._write(change).addBoth(done)

    def setFlags(self, uids, flags, mode, unchangedSince):
        def change(conn, journalRows):
            sql.lockFolders(conn, [self.folderId])
            rows = conn.execute("SELECT uid, flags, modseq, email_id FROM messages WHERE folder = %s "
                                "AND uid = ANY(%s) ORDER BY uid", (self.folderId, uids)).fetchall()
            todo, failed = [], []
            seen = False
            for uid, old, modseq, emailId in rows:
                if unchangedSince is not None and modseq > unchangedSince:
                    failed.append(uid)
                    continue
                old = frozenset(old)
                new = applyFlags(old, flags, mode)
                if new != old:
                    todo.append((uid, sorted(new)))
                    seen |= (SEEN in old) != (SEEN in new)
                    journal.row(journalRows, UPDATED, EMAIL, emailId)
            if todo:
                modseq, _, mailboxId = sql.bump(conn, self.folderId)
                if seen:
                    journal.row(journalRows, UPDATED, MAILBOX, mailboxId, True)
                with conn.cursor() as cur:
                    cur.executemany("UPDATE messages SET flags = %s, modseq = %s WHERE folder = %s AND uid = %s",
                                    [(new, modseq, self.folderId, uid) for uid, new in todo])
            return [uid for uid, _ in todo], failed

        def answer(value):
            changed, failed = value
            return [self.infos[u] for u in changed if u in self.infos], failed

        return self._write(change).addCallback(answer)

    def expunge(self, uids):
        def change(conn, rows):
            sql.lockFolders(conn, [self.folderId])
            return sql.deleteMessages(conn, self.folderId, uids, rows)

        return self._write(change)

    def copyTo(self, uids, dest, move=False):
        present = [uid for uid in uids if uid in self.infos]
        if not present:
            return []

        def change(conn, journalRows):
            sql.lockFolders(conn, [self.folderId, dest.folderId])
            rows = conn.execute("SELECT uid, body_hash, size, flags, internal_date, email_id FROM messages "
                                "WHERE folder = %s AND uid = ANY(%s) ORDER BY uid", (self.folderId, present)).fetchall()
            items = [(h, size, flags, date, emailId if move else None) for _, h, size, flags, date, emailId in rows]
            if not items:
                return []
            new = sql.insertMessages(conn, dest.folderId, self.account.accountId, items, journalRows)
            pairs = [(r[0], n[0]) for r, n in zip(rows, new)]
            if move:
                sql.deleteMessages(conn, self.folderId, [src for src, _ in pairs], journalRows, moved=True)
            return pairs

        return self._write(change, self, dest)

    def moveTo(self, uids, dest):
        return self.copyTo(uids, dest, move=True)

    # Applying a delta

    def apply(self, found, own=False):
        """
        Take in a delta (:func:`sql.delta`): update the snapshot, tell the
        listeners.  A delta read by :meth:`refresh` (``own`` false) may hold
        other processes' changes: the account's listeners are told too (the
        journal has them already: their writers wrote it).  Returns a
        Deferred.
        """
        if found is None:
            self.drop()
            return defer.succeed(None)
        row, msgs, gone = found
        added, changed = [], []
        for r in msgs:
            uid = r[0]
            old = self.infos.get(uid)
            info = _info(r)
            if old is None:
                if uid in self.gone:
                    continue  # expunged meanwhile (a stale delta)
                added.append(info)
                self.ids[uid] = r[1]
            elif info.modseq > old.modseq:
                if info.flags != old.flags:
                    changed.append(info)
            else:
                continue
            self.infos[uid] = info
        removed = []
        for modseq, uid in gone:
            self.expunged.append((modseq, uid))
            self.gone.add(uid)
            if uid in self.infos:
                removed.append(uid)
        removed.sort()
        if len(self.expunged) > 2 * sql.EXPUNGED_KEPT:
            # QRESYNC memory stays bounded: older expunges answer "cannot tell".
            self.expunged.sort()
            cut = len(self.expunged) - sql.EXPUNGED_KEPT
            self.expungedFloor = max(self.expungedFloor, self.expunged[cut - 1][0])
            del self.expunged[:cut]
            self.gone = {u for _, u in self.expunged}
        for uid in removed:
            del self.infos[uid]
            self.ids.pop(uid, None)
        self.reader.forget(removed)
        if added and self.infos and added[0].uid < max(self.infos):
            self.infos = dict(sorted(self.infos.items()))
        self.name = row[1]
        self.uidNext = max(self.uidNext, row[4])
        self.highestModSeq = max(self.highestModSeq, row[5])
        self.firstRecentUid = max(self.firstRecentUid, row[6])
        self.notify("messagesAdded", added)
        self.notify("flagsChanged", changed)
        self.notify("messagesExpunged", removed)
        if own or not (added or changed or removed):
            return defer.succeed(None)
        return self.account.changed([], None)

    def drop(self):
        """The folder was deleted: tell open handles its messages are gone."""
        if self.deleted:
            return
        self.deleted = True
        uids = list(self.infos)
        self.infos.clear()
        self.ids.clear()
        self.notify("messagesExpunged", uids)


def _saveRecent(conn, folderId, first):
    conn.execute("UPDATE folders SET first_recent = GREATEST(first_recent, %s) WHERE id = %s", (first, folderId))


def _now():
    import time

    return time.time()
