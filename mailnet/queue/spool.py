"""
The outbound spool: one item per message, plain files, never pickled.

Layout under ``<data_dir>/queue``::

    tmp/            data being received (removed if never committed)
    <id>.msg        the message, exactly as it will be sent (CRLF)
    <id>.json       the envelope: sender, DSN parameters, per-recipient status

An item exists once its ``.json`` exists.  Commit order: the data file is
written in tmp/ and fsynced, the envelope is written and fsynced, both are
renamed into place (data first), then the directory is fsynced.  A crash
at any point leaves either no item or a whole one.

Envelope fields (JSON, UTF-8, indented for people)::

    {"version": 1, "id": ..., "sender": "a@b" or "" (null reverse-path),
     "envid": str|null, "ret": "FULL"|"HDRS"|null, "smtputf8": bool,
     "body": "7BIT"|"8BITMIME"|"BINARYMIME", "arrival": epoch seconds,
     "client": "helo [ip]", "auth": username|null, "held": false,
     "delay_warned": false,
     "recipients": [{"address": ..., "orcpt": "rfc822;..."|null,
                     "notify": ["SUCCESS","FAILURE","DELAY"]|["NEVER"]|null,
                     "status": "pending"|"sent"|"failed"|"delayed",
                     "attempts": 0, "last_error": null, "next_attempt": epoch}]}
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time

from twisted.internet import threads

from mailnet.auth import fsyncDirectory, writeAtomically


def newQueueId() -> str:
    """Sortable by time, unique: ``<hex seconds><hex micro><random>``."""
    now = time.time()
    return f"{int(now):x}{int(now % 1 * 1e6):05x}{secrets.token_hex(4)}"


class SpoolWriter:
    """One message being written into the spool; see :meth:`Spool.newMessage`."""

    def __init__(self, spool, envelope):
        self.spool = spool
        self.envelope = envelope
        self.id = envelope["id"]
        self.tmpPath = os.path.join(spool.tmpDir, self.id)
        self._file = open(self.tmpPath, "wb")
        self.size = 0

    def write(self, data: bytes):
        self._file.write(data)
        self.size += len(data)

    def _commit(self):
        f = self._file
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self.envelope["size"] = self.size
        base = os.path.join(self.spool.path, self.id)
        os.replace(self.tmpPath, base + ".msg")
        writeAtomically(base + ".json", json.dumps(self.envelope, indent=1).encode(), mode=0o600)
        fsyncDirectory(self.spool.path)
        return self.id

    def commit(self):
        """
        Make the item durable.

        @return: Deferred firing with the queue id once the item is on disk.
        """
        d = threads.deferToThread(self._commit)
        d.addCallback(self.spool._added)
        return d

    def abort(self):
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmpPath)


class Spool:
    """
    The spool directory.  The SMTP server writes new items through
    :meth:`newMessage`; the queue scheduler registers with
    :meth:`addListener` to hear of them.
    """

    def __init__(self, path):
        self.path = path
        self.tmpDir = os.path.join(path, "tmp")
        os.makedirs(self.tmpDir, exist_ok=True)
        self._listeners = []

    def newMessage(self, sender, recipients, *, envid=None, ret=None, smtputf8=False,
                   body="7BIT", client=None, auth=None, arrival=None):
        """
        Start a new item.

        @param sender: the reverse-path ("" for the null sender).
        @param recipients: list of dicts with ``address`` and optionally
            ``orcpt`` and ``notify`` (RFC 3461 parameters, as received).
        @return: a :class:`SpoolWriter`; ``write`` the message (with trace
            headers), then ``commit`` or ``abort``.
        """
        now = time.time() if arrival is None else arrival
        envelope = {
            "version": 1,
            "id": newQueueId(),
            "sender": sender,
            "envid": envid,
            "ret": ret,
            "smtputf8": bool(smtputf8),
            "body": body,
            "arrival": now,
            "client": client,
            "auth": auth,
            "held": False,
            "delay_warned": False,
            "recipients": [
                {
                    "address": r["address"],
                    "orcpt": r.get("orcpt"),
                    "notify": r.get("notify"),
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                    "next_attempt": now,
                }
                for r in recipients
            ],
        }
        return SpoolWriter(self, envelope)

    def addListener(self, callback):
        """``callback(queueId)`` is called after each new item is durable."""
        self._listeners.append(callback)

    def _added(self, queueId):
        for callback in list(self._listeners):
            callback(queueId)
        return queueId

    def ids(self):
        """Ids of the complete items, oldest first."""
        return sorted(name[:-5] for name in os.listdir(self.path) if name.endswith(".json"))

    def load(self, queueId) -> dict:
        with open(os.path.join(self.path, queueId + ".json"), "rb") as f:
            return json.load(f)

    def dataPath(self, queueId) -> str:
        return os.path.join(self.path, queueId + ".msg")
