"""
The queries of the PostgreSQL store: plain functions ``f(conn, ...)`` run
by :meth:`~mailnet.store.postgres.db.Database.call` in one transaction
each (in a worker thread).  No Twisted here.
"""

from __future__ import annotations

import hashlib
import io
import tempfile

from mailnet.store.interfaces import INBOX, SPECIAL_USE, NoSuchAccount, NoSuchFolder, NoSuchMessage
from mailnet.store.postgres import gc, journal, listindex, quota
from mailnet.store.postgres.journal import CREATED, DESTROYED, EMAIL, MAILBOX, UPDATED
from mailnet.store.postgres.schema import CHUNK

MSG_COLS = "uid, email_id, flags, internal_date, size, modseq"
FOLDER_COLS = "id, name, mailbox_id, uidvalidity, uidnext, highestmodseq, first_recent"
# Bodies up to this size are read into memory (io.BytesIO, the protocols' fast
# path); bigger ones are spooled chunk by chunk into a temporary file.
IN_MEMORY = 4 * CHUNK
# QRESYNC: at most this many expunged UIDs per folder are kept in memory.
EXPUNGED_KEPT = 10_000


# Accounts and folders


def accountId(conn, username, create, keep=None):
    """
    The account's row id; made with INBOX and the special-use folders when
    ``create`` (its journal too; ``keep``: the changes it keeps).
    """
    row = conn.execute("SELECT id FROM accounts WHERE username = %s", (username,)).fetchone()
    if row is not None:
        return row[0]
    if not create:
        raise NoSuchAccount(username)
    row = conn.execute("INSERT INTO accounts (username) VALUES (%s) ON CONFLICT (username) DO NOTHING "
                       "RETURNING id", (username,)).fetchone()
    if row is None:  # made meanwhile by another session or node
        return conn.execute("SELECT id FROM accounts WHERE username = %s", (username,)).fetchone()[0]
    aid = row[0]
    journal.start(conn, aid)
    conn.execute("INSERT INTO quota_usage (account) VALUES (%s)", (aid,))
    rows = []
    for name in [INBOX, *SPECIAL_USE]:
        journal.row(rows, CREATED, MAILBOX, makeFolder(conn, aid, name)[2])
        conn.execute("INSERT INTO subscriptions VALUES (%s, %s) ON CONFLICT DO NOTHING", (aid, name))
    journal.write(conn, aid, rows, keep or 100_000)
    return aid


def makeFolder(conn, aid, name):
    return conn.execute(
        "INSERT INTO folders (account, name, mailbox_id, uidvalidity) "
        "VALUES (%s, %s, 'F' || nextval('mailbox_ids'), nextval('uidvalidities')) RETURNING " + FOLDER_COLS,
        (aid, name)).fetchone()


def folderRow(conn, aid, name):
    row = conn.execute("SELECT " + FOLDER_COLS + " FROM folders WHERE account = %s AND name = %s",
                       (aid, name)).fetchone()
    if row is None:
        raise NoSuchFolder(name)
    return row


def folderById(conn, folderId):
    """The folder's row (:data:`FOLDER_COLS`), or None when it is gone."""
    return conn.execute("SELECT " + FOLDER_COLS + " FROM folders WHERE id = %s", (folderId,)).fetchone()


def folderNames(conn, aid):
    return [r[0] for r in conn.execute("SELECT name FROM folders WHERE account = %s", (aid,))]


def folderExists(conn, username, name):
    """For a delivery: ``None`` (no such account), else whether the folder exists."""
    row = conn.execute("SELECT a.id, f.id FROM accounts a LEFT JOIN folders f ON f.account = a.id AND f.name = %s "
                       "WHERE a.username = %s", (name, username)).fetchone()
    if row is None:
        return None
    return row[1] is not None


def findEmail(conn, aid, emailId):
    return conn.execute("SELECT f.name, m.uid FROM messages m JOIN folders f ON f.id = m.folder "
                        "WHERE m.account = %s AND m.email_id = %s", (aid, emailId)).fetchone()


def isLive(conn, aid, emailId):
    return conn.execute("SELECT 1 FROM messages WHERE account = %s AND email_id = %s LIMIT 1",
                        (aid, emailId)).fetchone() is not None


# One folder's index


def loadFolder(conn, folderId):
    """``(folder row, message rows, expunged rows)`` of the whole folder."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    row = conn.execute("SELECT " + FOLDER_COLS + " FROM folders WHERE id = %s", (folderId,)).fetchone()
    if row is None:
        return None
    msgs = conn.execute("SELECT " + MSG_COLS + " FROM messages WHERE folder = %s ORDER BY uid", (folderId,)).fetchall()
    gone = conn.execute("SELECT modseq, uid FROM expunged WHERE folder = %s ORDER BY modseq DESC LIMIT %s",
                        (folderId, EXPUNGED_KEPT + 1)).fetchall()
    return row, msgs, gone


def delta(conn, folderId, since, isolate=True):
    """
    What changed in a folder since modseq ``since``: ``(folder row, message
    rows changed or added, expunged (modseq, uid) rows)``, or None when the
    folder is gone.  One snapshot (REPEATABLE READ), unless the caller holds
    the folder row's lock (a writer: nobody else changes the folder then).
    """
    if isolate:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    row = conn.execute("SELECT " + FOLDER_COLS + " FROM folders WHERE id = %s", (folderId,)).fetchone()
    if row is None:
        return None
    if row[5] == since:
        return row, [], []
    msgs = conn.execute("SELECT " + MSG_COLS + " FROM messages WHERE folder = %s AND modseq > %s ORDER BY uid",
                        (folderId, since)).fetchall()
    gone = conn.execute("SELECT modseq, uid FROM expunged WHERE folder = %s AND modseq > %s",
                        (folderId, since)).fetchall()
    return row, msgs, gone


def bump(conn, folderId, uids=0):
    """Lock the folder row, take a modseq and ``uids`` UIDs: ``(modseq, first uid, mailbox id)``."""
    row = conn.execute("UPDATE folders SET highestmodseq = highestmodseq + 1, uidnext = uidnext + %s "
                       "WHERE id = %s RETURNING highestmodseq, uidnext, mailbox_id", (uids, folderId)).fetchone()
    if row is None:
        raise NoSuchFolder(folderId)
    return row[0], row[1] - uids, row[2]


def lockFolders(conn, folderIds):
    """Row locks on several folders, in id order (no deadlock between two writers)."""
    conn.execute("SELECT id FROM folders WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(folderIds),))


def newEmailIds(conn, n):
    return ["M%d" % r[0] for r in conn.execute("SELECT nextval('email_ids') FROM generate_series(1, %s)", (n,))]


def insertMessages(conn, folderId, aid, items, rows):
    """
    ``items``: ``(bodyHash, size, flags, internalDate, emailId or None)``
    (an email id given: a MOVE).  Returns the new rows (as
    :data:`MSG_COLS`), one modseq for the batch; the journal rows go to
    ``rows``.
    """
    modseq, uid, mailboxId = bump(conn, folderId, len(items))
    fresh = iter(newEmailIds(conn, sum(1 for i in items if i[4] is None)))
    new = []
    for n, (h, size, flags, date, emailId) in enumerate(items):
        new.append((uid + n, emailId or next(fresh), sorted(flags), float(date), size, modseq))
        if emailId:
            journal.row(rows, UPDATED, EMAIL, emailId, True)
        else:
            journal.row(rows, CREATED, EMAIL, new[-1][1])
    journal.row(rows, UPDATED, MAILBOX, mailboxId, True)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO messages (folder, account, body_hash, uid, email_id, flags, internal_date, size, "
                        "modseq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(folderId, aid, item[0], *r) for item, r in zip(items, new)])
    quota.add(conn, aid, sum(item[1] for item in items), len(items))
    return new


def deleteMessages(conn, folderId, uids, rows, moved=False):
    """
    Remove messages (the folder row locked by the caller); the bodies nobody
    uses any more go too.  Journal rows to ``rows``: destroyed, or updated
    when ``moved`` (a MOVE's sources: the messages live on elsewhere).
    """
    gone = conn.execute("SELECT uid FROM messages WHERE folder = %s AND uid = ANY(%s)", (folderId, list(uids))).fetchall()
    if not gone:
        return []
    modseq, _, mailboxId = bump(conn, folderId)
    gone = conn.execute("DELETE FROM messages WHERE folder = %s AND uid = ANY(%s) "
                        "RETURNING uid, body_hash, email_id, account, size", (folderId, list(uids))).fetchall()
    if gone:
        quota.add(conn, gone[0][3], -sum(r[4] for r in gone), -len(gone))
    for _, _, emailId, _, _ in gone:
        journal.row(rows, UPDATED if moved else DESTROYED, EMAIL, emailId, moved)
    journal.row(rows, UPDATED, MAILBOX, mailboxId, True)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO expunged (folder, uid, modseq) VALUES (%s, %s, %s) "
                        "ON CONFLICT (folder, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
                        [(folderId, uid, modseq) for uid, *_ in gone])
    dropBodies(conn, {r[1] for r in gone})
    return sorted(r[0] for r in gone)


def dropBodies(conn, hashes):
    if not hashes:
        return
    # Lock first, then look (a new statement: it sees messages committed
    # meanwhile by a writer that held the body row's key-share lock).
    locked = [r[0] for r in conn.execute("SELECT hash FROM bodies WHERE hash = ANY(%s) FOR UPDATE", (list(hashes),))]
    if locked:
        conn.execute("DELETE FROM bodies b WHERE b.hash = ANY(%s) AND NOT EXISTS "
                     "(SELECT 1 FROM messages m WHERE m.body_hash = b.hash)", (locked,))


# Bodies


class Spool:
    """
    A message on its way in: written in pieces, hashed as it goes, kept in
    memory up to :data:`IN_MEMORY` bytes and in an unlinked temporary file
    beyond.
    """

    def __init__(self):
        self.file = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)
        self.hash = hashlib.sha256()
        self.size = 0

    @classmethod
    def of(cls, source):
        spool = cls()
        if isinstance(source, (bytes, bytearray, memoryview)):
            spool.write(source)
        else:
            while True:
                piece = source.read(CHUNK)
                if not piece:
                    break
                spool.write(piece)
        return spool

    def write(self, data):
        self.file.write(data)
        self.hash.update(data)
        self.size += len(data)

    def digest(self):
        return self.hash.digest()

    def chunks(self):
        self.file.seek(0)
        while True:
            piece = self.file.read(CHUNK)
            if not piece:
                return
            yield piece

    def close(self):
        self.file.close()


def storeBody(conn, spool, objects=None):
    """
    The body's row (made unless the same bytes are stored already); returns
    its hash.  ``objects`` (an :class:`~mailnet.store.postgres.objects.ObjectStore`):
    the bytes go there, before this transaction commits, instead of
    ``body_chunks`` (the row then has ``chunks = 0``).  A new body's list
    fields go in with it (listindex.py).
    """
    h = spool.digest()
    chunks = 0 if objects is not None else -(-spool.size // CHUNK)
    if objects is not None:
        # Before looking for the row: the sweep (gc.py) deletes no object
        # of this body until this transaction has ended.
        gc.shareObject(conn, h)
    # DO UPDATE (not NOTHING): it locks an existing row, so a concurrent
    # dropBodies waits for this transaction and then sees its message.
    inserted = conn.execute("INSERT INTO bodies (hash, size, chunks) VALUES (%s, %s, %s) "
                            "ON CONFLICT (hash) DO UPDATE SET size = EXCLUDED.size RETURNING (xmax = 0)",
                            (h, spool.size, chunks)).fetchone()[0]
    if inserted and objects is not None:
        if spool.size:
            objects.put(h, spool)
    elif inserted:
        with conn.cursor() as cur:
            for n, piece in enumerate(spool.chunks()):
                cur.execute("INSERT INTO body_chunks (hash, n, data) VALUES (%s, %s, %s)", (h, n, piece))
    if inserted:
        listindex.putFields(conn, h, listindex.spoolFields(spool))
    return h


def bodyHashes(conn, folderId, uids):
    return dict(conn.execute("SELECT uid, body_hash FROM messages WHERE folder = %s AND uid = ANY(%s)",
                             (folderId, list(uids))).fetchall())


def readBody(conn, folderId, uid, size=None, objects=None):
    """The message's bytes as a file (:func:`readOne` without the hash)."""
    return readOne(conn, folderId, uid, size, objects)[1]


def readOne(conn, folderId, uid, size=None, objects=None):
    """
    ``(body hash, the message's bytes)``: ``io.BytesIO`` up to
    :data:`IN_MEMORY` bytes, else an unlinked temporary file filled one
    chunk at a time (never the whole body in memory).  ``size``: the size
    the folder's index has, if known (a small message is then one query).
    ``objects``: bodies whose row has no chunks are read from that object
    store (streamed).  Needs no transaction (reader.py runs it without).
    """
    if objects is None and size is not None and 0 < size <= IN_MEMORY:
        rows = conn.execute(
            "SELECT m.body_hash, c.data FROM messages m JOIN body_chunks c ON c.hash = m.body_hash "
            "WHERE m.folder = %s AND m.uid = %s ORDER BY c.n", (folderId, uid), binary=True).fetchall()
        if not rows:
            raise NoSuchMessage(uid)
        return bytes(rows[0][0]), io.BytesIO(b"".join(bytes(r[1]) for r in rows))
    row = conn.execute("SELECT b.hash, b.size, b.chunks FROM messages m JOIN bodies b ON b.hash = m.body_hash "
                       "WHERE m.folder = %s AND m.uid = %s", (folderId, uid), binary=True).fetchone()
    if row is None:
        raise NoSuchMessage(uid)
    h, size, chunks = row
    h = bytes(h)
    if chunks == 0 and size > 0:
        if objects is None:
            raise NoSuchMessage(uid)  # stored by a node with [postgres] bodies = "s3"
        return h, objects.read(h, size, IN_MEMORY, CHUNK)
    if size <= IN_MEMORY:
        data = b"".join(bytes(r[0]) for r in conn.execute(
            "SELECT data FROM body_chunks WHERE hash = %s ORDER BY n", (h,), binary=True))
        return h, io.BytesIO(data)
    out = tempfile.TemporaryFile()
    try:
        for n in range(chunks):
            piece = conn.execute("SELECT data FROM body_chunks WHERE hash = %s AND n = %s", (h, n),
                                 binary=True).fetchone()
            if piece is None:
                raise NoSuchMessage(uid)
            out.write(piece[0])
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return h, out


def readBodies(conn, folderId, uids, objects=None):
    """
    The small bodies (up to :data:`IN_MEMORY` bytes) of several messages in
    one query: ``[(uid, body hash, bytes)]``; messages gone, or with larger
    bodies, are left out.  Bodies in the object store (``objects``) are
    fetched one after another here, in this worker.
    """
    rows = conn.execute(
        "SELECT m.uid, b.hash, b.size, b.chunks, c.data FROM messages m JOIN bodies b ON b.hash = m.body_hash "
        "LEFT JOIN body_chunks c ON c.hash = b.hash "
        "WHERE m.folder = %s AND m.uid = ANY(%s) AND b.size <= %s ORDER BY m.uid, c.n",
        (folderId, list(uids), IN_MEMORY), binary=True).fetchall()
    out = []
    pieces = []
    for i, (uid, h, size, chunks, data) in enumerate(rows):
        if data is not None:
            pieces.append(data)
        if i + 1 < len(rows) and rows[i + 1][0] == uid:
            continue
        h = bytes(h)
        if chunks == 0 and size > 0:
            if objects is not None:
                out.append((uid, h, objects.read(h, size, IN_MEMORY, CHUNK).getvalue()))
        else:
            body = b"".join(bytes(p) for p in pieces)
            if len(body) == size:
                out.append((uid, h, body))
        pieces = []
    return out
