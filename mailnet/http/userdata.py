"""
Small per-user JSON documents of the JMAP data types (Identity's fields
the user sets), and the journal of held submissions (:class:`OutboxJournal`): :class:`~mailnet.jmap.identity.IUserData` on disk, one
file per user and document under ``<data_dir>/jmap/<accountId>/``, written
atomically and fsynced (mailnet/durable.py) in a worker thread, one change
at a time per user.  A file that cannot be read as JSON is set aside
(``<name>.json.corrupt``), logged, and read as empty.  With several nodes
(``[store] backend = "postgres"``) :class:`RoutedUserData` sends the
documents every node must see alike to the database's IUserData
(mailnet/store/postgres/userdata.py, chosen by mailnet/service.py).
"""

from __future__ import annotations

import json
import os
import re

from twisted.internet import defer, threads
from zope.interface import implementer

from mailnet.durable import fsyncDirectory, readJSONObject, writeAtomically
from mailnet.jmap.core import accountIdFor
from mailnet.jmap.identity import IUserData
from mailnet.jmap.submission import IOutboxJournal
from mailnet.logs import Logger

log = Logger()

MAX_FILE = 4 * 1024 * 1024
NAME = frozenset({"identities", "pushsubscriptions", "webmail"})  # webmail: the app's settings (mailnet/http/webmail.py)


@implementer(IUserData)
class JSONUserData:
    """
    @param root: ``<data_dir>/jmap``.
    @param runInThread: ``f(callable, *args) -> Deferred`` (tests run at once).
    """

    def __init__(self, root, runInThread=None):
        self.root = root
        self.runInThread = runInThread or threads.deferToThread
        self.locks = {}

    def _path(self, username, name):
        if name not in NAME:
            raise ValueError("unknown document")
        return os.path.join(self.root, accountIdFor(username), name + ".json")

    def _read(self, path):
        try:
            return readJSONObject(path, MAX_FILE)
        except ValueError as e:
            log.error("jmap: a user data file was unreadable ({why}); set aside as .corrupt", why=str(e)[:100])
            return None

    def _write(self, path, value):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        writeAtomically(path, json.dumps(value, indent=1, sort_keys=True).encode("utf-8"), mode=0o600)

    def load(self, username, name):
        return self.runInThread(self._read, self._path(username, name))

    def loadAll(self, name):
        """
        A Deferred of ``[(username, doc)]``: every user's document ``name``
        that names its user (``doc["username"]``, as PushSubscription's do):
        what the server needs at start.
        """
        if name not in NAME:
            raise ValueError("unknown document")
        return self.runInThread(self._loadAll, name)

    def _loadAll(self, name):
        out = []
        try:
            accounts = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return out
        for account in accounts:
            path = os.path.join(self.root, account, name + ".json")
            if not os.path.exists(path):
                continue
            doc = self._read(path)
            username = doc.get("username") if isinstance(doc, dict) else None
            if isinstance(username, str) and accountIdFor(username) == account:
                out.append((username, doc))
        return out

    def update(self, username, name, change):
        path = self._path(username, name)
        lock = self.locks.setdefault(path, defer.DeferredLock())

        async def run():
            old = await self.runInThread(self._read, path)
            new = change(old)
            await self.runInThread(self._write, path, new)
            return new

        def release(result):
            if not lock.locked and not lock.waiting:
                self.locks.pop(path, None)
            return result

        return lock.run(lambda: defer.ensureDeferred(run())).addBoth(release)


@implementer(IUserData)
class RoutedUserData:
    """
    An :class:`~mailnet.jmap.identity.IUserData` that sends the documents
    ``sharedNames`` to ``shared`` (with several nodes: the database's, so
    every node sees the same identities, settings and push subscriptions;
    docs/scaling.md) and every other one to ``local`` (the node's files).
    """

    def __init__(self, shared, local, sharedNames):
        self.shared = shared
        self.local = local
        self.sharedNames = frozenset(sharedNames)

    def _for(self, name):
        return self.shared if name in self.sharedNames else self.local

    def load(self, username, name):
        return self._for(name).load(username, name)

    def loadAll(self, name):
        return self._for(name).loadAll(name)

    def update(self, username, name, change):
        return self._for(name).update(username, name, change)


_SUBMISSION_ID = re.compile(r"S[0-9a-f]{20}\Z")


@implementer(IOutboxJournal)
class OutboxJournal:
    """
    Held JMAP submissions on disk (undo send survives a restart):
    ``<data_dir>/jmap/outbox/<id>.msg`` (the bytes to send) and
    ``<id>.json`` (who, envelope, when due, the EmailSubmission), each
    written atomically and fsynced, the message first: an entry exists once
    its ``.json`` does.  Removal takes the ``.json`` first.  An entry that
    cannot be read is set aside in ``corrupt/`` and logged.
    """

    def __init__(self, root, runInThread=None):
        self.root = root
        self.runInThread = runInThread or threads.deferToThread

    def _path(self, submissionId, suffix):
        if not _SUBMISSION_ID.match(submissionId):
            raise ValueError("bad submission id")
        return os.path.join(self.root, submissionId + suffix)

    def save(self, submissionId, entry, data):
        return self.runInThread(self._save, submissionId, entry, data)

    def _save(self, submissionId, entry, data):
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        writeAtomically(self._path(submissionId, ".msg"), data, mode=0o600)
        writeAtomically(self._path(submissionId, ".json"), json.dumps(entry, sort_keys=True).encode(), mode=0o600)

    def remove(self, submissionId):
        return self.runInThread(self._remove, submissionId)

    def _remove(self, submissionId):
        for suffix in (".json", ".msg"):
            try:
                os.unlink(self._path(submissionId, suffix))
            except FileNotFoundError:
                pass
        fsyncDirectory(self.root)

    def load(self):
        return self.runInThread(self._load)

    def _load(self):
        out = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return out
        for name in names:
            submissionId, _, suffix = name.partition(".")
            if suffix != "json" or not _SUBMISSION_ID.match(submissionId):
                continue
            try:
                with open(self._path(submissionId, ".json"), "rb") as f:
                    entry = json.loads(f.read(MAX_FILE))
                with open(self._path(submissionId, ".msg"), "rb") as f:
                    data = f.read()
                if not (isinstance(entry, dict) and isinstance(entry.get("username"), str)
                        and isinstance(entry.get("mailFrom"), str) and isinstance(entry.get("rcptTo"), list)
                        and isinstance(entry.get("due"), (int, float)) and isinstance(entry.get("record"), dict)
                        and entry["record"].get("id") == submissionId):
                    raise ValueError("not a held submission")
            except (OSError, ValueError) as e:
                self._setAside(submissionId)
                log.error("jmap: held submission {id} unreadable ({why}); set aside", id=submissionId,
                          why=str(e)[:100])
                continue
            out.append((entry, data))
        return out

    def _setAside(self, submissionId):
        corrupt = os.path.join(self.root, "corrupt")
        os.makedirs(corrupt, mode=0o700, exist_ok=True)
        for suffix in (".json", ".msg"):
            try:
                os.replace(self._path(submissionId, suffix), os.path.join(corrupt, submissionId + suffix))
            except FileNotFoundError:
                pass
