"""
``mailnet queue`` on the queue shared in PostgreSQL (mailnet/queue/pgspool.py),
from any node, with or without a server running there.

``list`` and ``show`` read the table (an item's state as last committed by
the node delivering it).  A change to an item goes to whoever holds it:

* held by a node with a live lease: the command is queued for that node
  (``queue_commands``); it applies it to its in-memory item within
  ``[queue] claim_interval`` seconds and writes the result itself, so a
  command never races a delivery;
* held by nobody (or by a node whose lease ran out): the row is changed
  here, under its row lock (``FOR UPDATE``), fenced against a node
  claiming it meanwhile.

The results have the shapes of :mod:`mailnet.queue.control`'s.
"""

from __future__ import annotations

import time

from mailnet.queue.control import COMMANDS, HEADER_LIMIT, NEEDS_ID, AdminError
from mailnet.queue.envelope import EnvelopeError, parse, validId
from mailnet.queue.pgspool import NOW, nextTry
from mailnet.store.interfaces import TemporaryStoreError


def _header(conn, queueId) -> str:
    row = conn.execute("SELECT substring(data FROM 1 FOR %s) FROM queue_chunks WHERE id = %s AND n = 0",
                       (HEADER_LIMIT, queueId)).fetchone()
    data = bytes(row[0]) if row else b""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        data = data[: end + 2]
    return data.decode("utf-8", "replace").replace("\r\n", "\n")


def _rows(conn, queueId=None, lock=False):
    where = "WHERE id = %s" if queueId else ""
    sql = (f"SELECT id, envelope, owner, owner IS NOT NULL AND lease_until >= {NOW}, corrupt "
           f"FROM queue_items {where} ORDER BY id" + (" FOR UPDATE" if lock else ""))
    return conn.execute(sql, (queueId,) if queueId else ()).fetchall()


def _write(conn, envelope):
    conn.execute("UPDATE queue_items SET envelope = %s, next_try = %s WHERE id = %s",
                 (envelope.serialize(), nextTry(envelope), envelope.id))


def handle(conn, command, queueId=None):
    """One command in one transaction on ``conn``; see the module docstring."""
    if command not in COMMANDS:
        raise AdminError(f"unknown command {command!r}")
    if command in NEEDS_ID and not queueId:
        raise AdminError(f"{command}: which item?")
    if queueId is not None and not validId(queueId):
        raise AdminError(f"no queue item {queueId}")
    rows = _rows(conn, queueId, lock=command != "list" and command != "show")
    if queueId and not rows:
        raise AdminError(f"no queue item {queueId}")
    items = []
    for qid, data, owner, live, corrupt in rows:
        if corrupt is None:
            try:
                items.append((qid, parse(bytes(data), qid), owner, live, None))
                continue
            except EnvelopeError as e:
                corrupt = str(e)
        items.append((qid, None, owner, live, corrupt))
    if command == "list":
        out = []
        for qid, envelope, owner, live, corrupt in items:
            if envelope is None:
                out.append({"id": qid, "corrupt": corrupt})
            else:
                out.append(dict(envelope.toDict(), node=owner if live else None))
        return out
    if command == "delete" and items[0][1] is None:
        conn.execute("DELETE FROM queue_items WHERE id = %s", (queueId,))
        return {"server": True}
    if queueId and items[0][1] is None:
        raise AdminError(f"{queueId} is corrupt and set aside: {items[0][4]}")
    if command == "show":
        qid, envelope, owner, live, _ = items[0]
        return {"envelope": dict(envelope.toDict(), node=owner if live else None),
                "header": _header(conn, qid), "server": True}
    if command == "flush":
        now = time.time()
        count = 0
        errors = []
        for qid, envelope, owner, live, corrupt in items:
            if envelope is None:
                errors.append(f"{qid} is corrupt: {corrupt}")
                continue
            if envelope.held:
                continue
            active = [r for r in envelope.recipients if r.status in ("pending", "delayed")]
            count += len(active)
            if live:
                conn.execute("INSERT INTO queue_commands (id, command) VALUES (%s, 'flush')", (qid,))
            elif active:
                for r in active:
                    r.next_attempt = now
                _write(conn, envelope)
        return {"recipients": count, "server": True, "errors": errors}
    qid, envelope, owner, live, _ = items[0]
    if live:
        conn.execute("INSERT INTO queue_commands (id, command) VALUES (%s, %s)", (qid, command))
        return {"server": True, "node": owner}
    if command == "delete":
        conn.execute("DELETE FROM queue_items WHERE id = %s", (qid,))
    else:
        envelope.held = command == "hold"
        _write(conn, envelope)
    return {"server": True}


def run(config, command, queueId=None):
    """``mailnet queue COMMAND [ID]`` on the shared queue of ``config``."""
    from mailnet.store.postgres.db import Database, Settings

    import psycopg

    db = Database(Settings.fromConfig(config))
    try:
        return db.call(handle, command, queueId)
    except TemporaryStoreError as e:
        raise AdminError(str(e)) from None
    except psycopg.errors.UndefinedTable:
        raise AdminError("the database has no queue tables (schema older than version 5): "
                         "run `mailnet db upgrade`") from None
    except OSError as e:
        raise AdminError(f"[postgres] password_file: {e.strerror}") from None
    finally:
        db.close()
