"""
The message list index of the PostgreSQL store, in the database (schema
version 7; docs/store.md "Message list index"): the queries, plain
functions ``f(conn, ...)`` as in sql.py (no Twisted here).

What a message list needs is in two places, both written by the
transaction that writes the message, so every node sees one index and a
restart reads no body:

* the ``messages`` rows (per account: mailbox, UID, received date, size,
  flags, email id), sorted by received date through the indexes
  ``messages_received`` (account) and ``messages_folder_received`` (one
  folder);
* ``body_summaries``: the list fields of :mod:`mailnet.mail.summary`
  (JSON) per body, keyed like the body by its SHA-256.  The fields are a
  function of the bytes, so they are made once per body, in the
  transaction that stores the body (:func:`putFields`, called by
  ``sql.storeBody``), and go with it (``ON DELETE CASCADE``): a COPY, a
  MOVE, a delivery to many recipients write none.

Thread ids come from the thread index (``thread_emails``), flags from the
message rows: a flag change on any node is in the next answer.  A body
without fields (stored before version 7 in an object store that
``mailnet db upgrade`` could not reach) is summarised when first listed
(:func:`build`).
"""

from __future__ import annotations

import json
import time

from mailnet.mail.summary import READ_LIMIT, summarize
from mailnet.store.errors import StoreError
from mailnet.store.postgres.schema import CHUNK

# The summary row's columns, in order (see rows()).
ROW_COLS = ("m.email_id, f.mailbox_id, f.name, m.folder, m.uid, m.internal_date, m.size, m.flags, "
            "t.thread, s.fields, m.body_hash")
FILL_BATCH = 200  # bodies summarised per statement by fill()


def fieldsOf(data: bytes) -> str:
    """(Blocking.)  The stored fields (JSON text) of a message's first bytes."""
    return json.dumps(summarize(data).toJson(), ensure_ascii=False, separators=(",", ":"))


def spoolFields(spool) -> str:
    """The fields of a :class:`~mailnet.store.postgres.sql.Spool` (its first READ_LIMIT bytes)."""
    f = spool.file
    f.seek(0)
    data = f.read(READ_LIMIT)
    f.seek(0, 2)
    return fieldsOf(data)


def putFields(conn, h, fields):
    conn.execute("INSERT INTO body_summaries (hash, fields) VALUES (%s, %s) ON CONFLICT (hash) DO NOTHING",
                 (h, fields))


def _head(conn, h, size, chunks, objects):
    """The first READ_LIMIT bytes of a body; None when its bytes are out of reach."""
    if size == 0:
        return b""
    if chunks > 0:
        n = -(-READ_LIMIT // CHUNK)
        data = b"".join(bytes(r[0]) for r in conn.execute(
            "SELECT data FROM body_chunks WHERE hash = %s AND n < %s ORDER BY n", (h, n)))
        return data[:READ_LIMIT]
    if objects is None:
        return None
    f = objects.read(h, size, READ_LIMIT, CHUNK)  # the whole object (no ranged read yet)
    try:
        return f.read(READ_LIMIT)
    finally:
        f.close()


# Reading


def page(conn, aid, mailboxId, position, limit, newestFirst):
    """``(ids, total)``: one page of the account's (or one mailbox's) email ids, by received date then id."""
    order = "DESC" if newestFirst else "ASC"
    if mailboxId is None:
        total = conn.execute("SELECT messages FROM quota_usage WHERE account = %s", (aid,)).fetchone()
        total = total[0] if total else 0
        where, args = "m.account = %s", [aid]
    else:
        row = conn.execute("SELECT id FROM folders WHERE account = %s AND mailbox_id = %s",
                           (aid, mailboxId)).fetchone()
        if row is None:
            return [], 0
        total = conn.execute("SELECT count(*) FROM messages WHERE folder = %s", (row[0],)).fetchone()[0]
        where, args = "m.folder = %s", [row[0]]
    if limit == 0:
        return [], total
    ids = [r[0] for r in conn.execute(
        "SELECT m.email_id FROM messages m WHERE %s ORDER BY m.internal_date %s, m.email_id COLLATE \"C\" %s "
        "LIMIT %%s OFFSET %%s" % (where, order, order), args + [limit, position])]
    return ids, total


def rows(conn, aid, emailIds):
    """``{emailId: row}`` (:data:`ROW_COLS`) of the account's messages among ``emailIds``."""
    if not emailIds:
        return {}
    return {r[0]: r for r in conn.execute(
        "SELECT " + ROW_COLS + " FROM messages m JOIN folders f ON f.id = m.folder "
        "LEFT JOIN body_summaries s ON s.hash = m.body_hash "
        "LEFT JOIN thread_emails t ON t.account = m.account AND t.email = m.email_id "
        "WHERE m.account = %s AND m.email_id = ANY(%s)", (aid, list(emailIds)))}


def build(conn, hashes, objects=None):
    """Summarise bodies that have no fields yet (read now); ``{hash: fields}`` of those read."""
    out = {}
    for h, size, chunks in conn.execute("SELECT hash, size, chunks FROM bodies WHERE hash = ANY(%s)",
                                        (list(hashes),)).fetchall():
        data = _head(conn, h, size, chunks, objects)
        if data is None:
            continue
        out[bytes(h)] = fieldsOf(data)
        putFields(conn, h, out[bytes(h)])
    return out


def fill(conn, objects=None, batch=None):
    """
    ``mailnet db upgrade`` to version 7 (and every upgrade after it):
    fields for every stored body that has none, each read once, ``batch``
    bodies per transaction of their own (no long lock: deliveries go on;
    interrupted, the next upgrade carries on).  Bodies in an object store
    that ``objects`` is None for are left to :func:`build`.  Returns
    ``(bodies summarised, seconds)``.
    """
    batch = batch or FILL_BATCH
    start = time.monotonic()
    done = 0
    last = b""
    while True:
        with conn.transaction():
            found = conn.execute("SELECT b.hash, b.size, b.chunks FROM bodies b WHERE b.hash > %s AND NOT EXISTS "
                                 "(SELECT 1 FROM body_summaries s WHERE s.hash = b.hash) ORDER BY b.hash LIMIT %s",
                                 (last, batch)).fetchall()
            if not found:
                break
            made = []
            for h, size, chunks in found:
                try:
                    data = _head(conn, h, size, chunks, objects)
                except StoreError:
                    data = None  # the object store did not answer: left to build()
                if data is not None:
                    made.append((h, fieldsOf(data)))
            with conn.cursor() as cur:
                # A body dropped meanwhile has no row to refer to: its fields are not written.
                cur.executemany("INSERT INTO body_summaries (hash, fields) SELECT hash, %s FROM bodies "
                                "WHERE hash = %s ON CONFLICT DO NOTHING", [(f, h) for h, f in made])
        done += len(made)
        last = found[-1][0]
    return done, time.monotonic() - start
