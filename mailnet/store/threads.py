"""
Thread ids (JMAP RFC 8621 s3, IMAP OBJECTID THREADID RFC 8474): one
account-wide grouping of messages into conversations, shared by the
builtin backends (memory: SQLite in memory; Maildir: a SQLite file of our
own beside Dovecot's, ``mailnet-threads.sqlite``).  See "Thread ids" in
docs/store.md for the rules; in short:

* A message's *key* (Message-ID, References or In-Reply-To, base subject,
  reply or not: :mod:`mailnet.mail.threading`) is read from its header
  the first time its thread id is asked for, and kept by email id.
* It joins every thread with a message of the same base subject that it
  references, that references it, that shares a reference with it, or
  that has its Message-ID (a copy).  With none, a reply by subject alone
  ("Re: x", no references at all) joins the latest thread of base
  subject x, as RFC 5256 REFERENCES merges by subject.  Else it starts a
  thread whose id is ``T`` + its email id.
* When it joins several threads they merge into the oldest (the one whose
  first message was indexed first); the messages of the others change
  thread id (the one case where a thread id changes).
"""

from __future__ import annotations

import threading as _threading

from twisted.internet import defer

from mailnet.logs import Logger
from mailnet.mail import threading
from mailnet.mail.lines import readHeaderBlock
from mailnet.store.interfaces import StoreError, messageBytes
from mailnet.store.sqlitefile import SQLiteFile, createPrivate, openVersioned, setAside

log = Logger()

SCHEMA_VERSION = "1"
FILE_NAME = "mailnet-threads.sqlite"
# A header is read up to this size for its key (the fields are near the top).
HEADER_LIMIT = 64 * 1024
# Messages opened, read and indexed per round.
BATCH = 256
_CHUNK = 500  # ids per SQL IN (...)
MAX_REFS = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS emails(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT UNIQUE NOT NULL,
    thread TEXT NOT NULL,
    msgid TEXT,
    subject TEXT NOT NULL,
    reply INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS emails_thread ON emails(thread, seq);
CREATE INDEX IF NOT EXISTS emails_msgid ON emails(msgid);
CREATE INDEX IF NOT EXISTS emails_subject ON emails(subject, seq);
CREATE TABLE IF NOT EXISTS refs(email TEXT NOT NULL, ref TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS refs_ref ON refs(ref);
CREATE TABLE IF NOT EXISTS merges(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL, absorbed TEXT NOT NULL, thread TEXT NOT NULL);
"""


def keyOf(header: bytes):
    """
    (messageId, refs, baseSubject, reply) of a message header.  At most
    MAX_REFS references are kept: the first (the thread's root) and the
    last ones (the closest ancestors); SQLite takes a bounded number of
    parameters per query.
    """
    f = threading.headerFields(header)
    subject, reply = threading.baseSubject(f.get("subject"))
    ids = threading.messageIds(f.get("messageId"))
    refs = threading.references(f.get("references"), f.get("inReplyTo"))
    if len(refs) > MAX_REFS:
        refs = refs[:1] + refs[1 - MAX_REFS:]
    return ids[0] if ids else None, refs, subject, reply


def readHeader(f, limit=HEADER_LIMIT) -> bytes:
    """
    The header block of an open message (at most ``limit`` bytes; a
    message held in memory may give more of it); closes ``f``.
    """
    try:
        data = messageBytes(f)
        if data is not None:
            return data[:limit]  # headerFields stops at the empty line
        return readHeaderBlock(f, limit)
    finally:
        f.close()


class ThreadIndex(SQLiteFile):
    """
    The SQLite side: email id -> thread id, and the keys that link them.
    Every method may be called from any thread (one lock).  ``path`` None
    keeps the database in memory.  A database that cannot be opened or
    read is reported (no path), set aside as ``<name>.corrupt`` and made
    again, empty: thread ids are then worked out afresh as they are asked
    for.
    """

    what = "the thread index"

    def __init__(self, path=None):
        self.path = path
        self.lock = _threading.Lock()
        self.db = None
        self.generation = 0  # bumped when ids may have changed (a merge, a rebuild)

    def _connect(self):
        if self.path:
            # Subjects and Message-IDs are private: 0600 like the messages.
            createPrivate(self.path)
        # WAL: a commit is one append; NORMAL: no fsync per commit (a power
        # cut may lose the last commits, which are worked out again from the
        # messages; kill -9 loses nothing).
        return openVersioned(self.path, "NORMAL", _SCHEMA, SCHEMA_VERSION, "SELECT count(*) FROM emails WHERE seq < 0")

    def _setAside(self):
        log.warn("thread index {name} is corrupt; set aside and rebuilt", name=FILE_NAME)
        self._close()
        self.generation += 1
        if not self.path:
            return
        setAside(self.path)

    def close(self):
        with self.lock:
            if self.db is not None:
                self.db.close()
                self.db = None

    # Reading

    def read(self, f, *args):
        """``f(db, *args)`` under the lock (the account's change journal reads new rows)."""
        return self._guarded(f, *args)

    def lookup(self, emailIds):
        """``{emailId: threadId}`` for the ids the index knows."""
        return self._guarded(_lookup, list(emailIds))

    def members(self, threadId):
        """The email ids of a thread, in the order they were indexed."""
        return self._guarded(_members, threadId)

    # Writing

    def add(self, entries):
        """
        Index ``(emailId, key)`` entries in order (ids known already are
        left as they are); returns ``({emailId: threadId}, merged)``.
        """
        out, merged = self._guarded(_add, list(entries))
        if merged:
            self.generation += 1
        return out, merged


def _chunks(items):
    for i in range(0, len(items), _CHUNK):
        yield items[i:i + _CHUNK]


def _lookup(db, emailIds):
    out = {}
    for chunk in _chunks(emailIds):
        q = "SELECT email, thread FROM emails WHERE email IN (%s)" % ",".join("?" * len(chunk))
        out.update(db.execute(q, chunk).fetchall())
    return out


def _members(db, threadId):
    return [r[0] for r in db.execute("SELECT email FROM emails WHERE thread=? ORDER BY seq", (threadId,))]


def _add(db, entries):
    out = {}
    merged = False
    db.execute("BEGIN IMMEDIATE")
    try:
        for emailId, (mid, refs, subject, reply) in entries:
            row = db.execute("SELECT thread FROM emails WHERE email=?", (emailId,)).fetchone()
            if row is not None:
                out[emailId] = row[0]
                continue
            ids = list(refs) + ([mid] if mid else [])
            candidates = set()
            if ids:
                marks = ",".join("?" * len(ids))
                # "+subject": look up by Message-ID, not by subject (all the
                # mail of one subject, or without one, would be read per message).
                q = ("SELECT thread FROM emails WHERE +subject=? AND msgid IN (%s) "
                     "UNION SELECT e.thread FROM refs r JOIN emails e ON e.email=r.email "
                     "WHERE +e.subject=? AND r.ref IN (%s)") % (marks, marks)
                candidates = {r[0] for r in db.execute(q, [subject, *ids, subject, *ids])}
            if not candidates and not refs and reply and subject:
                # RFC 5256 s2.2 step 5 in spirit: a reply by subject alone joins its subject's latest thread.
                row = db.execute("SELECT thread FROM emails WHERE subject=? ORDER BY seq DESC LIMIT 1",
                                 (subject,)).fetchone()
                if row is not None:
                    candidates = {row[0]}
            if not candidates:
                thread = "T" + emailId[:254]
            elif len(candidates) == 1:
                (thread,) = candidates
            else:
                # Merge into the oldest thread (the smallest first seq).
                cs = sorted(candidates)
                q = "SELECT thread, MIN(seq) FROM emails WHERE thread IN (%s) GROUP BY thread" % ",".join("?" * len(cs))
                firsts = dict(db.execute(q, cs).fetchall())
                thread = min(cs, key=lambda t: (firsts.get(t, 1 << 62), t))
                others = [t for t in cs if t != thread]
                # For the change journal (mailnet/store/changes.py): who moved where.
                db.execute("INSERT INTO merges(email, absorbed, thread) SELECT email, thread, ? FROM emails "
                           "WHERE thread IN (%s)" % ",".join("?" * len(others)), [thread, *others])
                db.execute("UPDATE emails SET thread=? WHERE thread IN (%s)" % ",".join("?" * len(others)),
                           [thread, *others])
                merged = True
            db.execute("INSERT INTO emails(email, thread, msgid, subject, reply) VALUES (?, ?, ?, ?, ?)",
                       (emailId, thread, mid, subject, int(bool(reply))))
            db.executemany("INSERT INTO refs(email, ref) VALUES (?, ?)", [(emailId, r) for r in refs])
            out[emailId] = thread
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return out, merged


class AccountThreads:
    """
    The thread ids of one account, for the folder indexes of a backend
    (anything with ``emailIds(uids)``, ``get(uid)`` and
    ``openMessage(uid)`` as :class:`~mailnet.store.interfaces.IFolder`
    has them).  ``run(f, *args) -> Deferred`` runs blocking work (the
    SQLite calls, header parsing).  A cache in memory answers ids asked
    before without a query; it is dropped when ids may have changed.
    """

    def __init__(self, index: ThreadIndex, run):
        self.index = index
        self.run = run
        self.cache = {}
        self.generation = index.generation
        self.onIndexed = None  # called (no arguments) after messages were indexed

    def _cached(self):
        if self.generation != self.index.generation:
            self.cache.clear()
            self.generation = self.index.generation
        return self.cache

    def threadIds(self, folder, uids):
        """Deferred ``{uid: threadId}`` for the UIDs of ``folder`` that it has (see IFolder.threadIds)."""
        return defer.ensureDeferred(self._threadIds(folder, uids))

    async def _threadIds(self, folder, uids):
        emailIds = folder.emailIds(uids)
        generation = self.index.generation
        cache = self._cached()
        out = {}
        unknown = {}
        for uid, emailId in emailIds.items():
            t = cache.get(emailId)
            if t is None:
                unknown[uid] = emailId
            else:
                out[uid] = t
        if not unknown:
            return out
        known = await self.run(self.index.lookup, list(unknown.values()))
        cache = self._cached()
        cache.update(known)
        missing = []
        for uid, emailId in unknown.items():
            t = known.get(emailId)
            if t is None:
                missing.append(uid)
            else:
                out[uid] = t
        # New to the index: read their headers, oldest first (arrival order).
        missing.sort(key=lambda u: ((folder.get(u) or _NONE).internalDate, u))
        for start in range(0, len(missing), BATCH):
            batch = []
            prefetch = getattr(folder, "prefetch", None)
            if prefetch is not None and len(missing) > start + 1:
                prefetch(missing[start:start + BATCH])  # a hint: a store may read them in batches
            for uid in missing[start:start + BATCH]:
                try:
                    f = await defer.maybeDeferred(folder.openMessage, uid)
                except Exception:
                    continue  # gone meanwhile (or unreadable): no thread id
                batch.append((uid, unknown[uid], f))
            added, _ = await self.run(_indexBatch, self.index, batch)
            if added and self.onIndexed is not None:
                self.onIndexed()
            cache = self._cached()
            cache.update(added)
            for uid, emailId, _ in batch:
                if emailId in added:
                    out[uid] = added[emailId]
        if self.index.generation != generation:
            # Threads merged (or the index was rebuilt) meanwhile: read the ids again.
            fresh = await self.run(self.index.lookup, [emailIds[u] for u in out])
            out = {u: fresh[emailIds[u]] for u in out if emailIds[u] in fresh}
            self._cached().update(fresh)
        return out

    def threadEmails(self, threadId):
        """Deferred list of the email ids the index has for ``threadId`` (expunged ones too), oldest first."""
        if not isinstance(threadId, str) or not threadId:
            return defer.succeed([])
        return self.run(self.index.members, threadId)

    def liveEmails(self, account, threadId):
        """
        Deferred list of the email ids of ``threadId`` that ``account``
        still has (``findEmail``), oldest first: IAccount.threadEmails.
        """
        return defer.ensureDeferred(self._liveEmails(account, threadId))

    async def _liveEmails(self, account, threadId):
        out = []
        for emailId in await self.threadEmails(threadId):
            if await account.findEmail(emailId) is not None:
                out.append(emailId)
        return out

    def threadOf(self, account, emailIds):
        """
        Deferred ``{emailId: threadId}`` for the ids ``account`` has
        (``findEmail``): IAccount.threadOf.  Each folder concerned is
        opened once (its handles share the open index).
        """
        return defer.ensureDeferred(self._threadOf(account, emailIds))

    async def _threadOf(self, account, emailIds):
        byFolder = {}
        for emailId in dict.fromkeys(e for e in emailIds if isinstance(e, str)):
            where = await account.findEmail(emailId)
            if where is not None:
                byFolder.setdefault(where[0], {})[where[1]] = emailId
        out = {}
        for name, uids in byFolder.items():
            try:
                folder = await account.openFolder(name)
            except StoreError:
                continue  # deleted meanwhile
            try:
                found = await folder.threadIds(list(uids))
            finally:
                folder.close()
            for uid, threadId in found.items():
                out[uids[uid]] = threadId
        return out

    def close(self):
        self.index.close()


class _None:
    internalDate = 0.0


_NONE = _None()


def _indexBatch(index, batch):
    """(Blocking.) Read each header, then index them in order."""
    entries = []
    for _, emailId, f in batch:
        try:
            header = readHeader(f)
        except (OSError, ValueError):
            continue
        entries.append((emailId, keyOf(header)))
    return index.add(entries)
