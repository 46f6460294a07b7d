"""
Small per-user JSON documents of the JMAP data types (Identity's fields
the user sets): :class:`~mailnet.jmap.identity.IUserData` on disk, one
file per user and document under ``<data_dir>/jmap/<accountId>/``, written
atomically and fsynced (mailnet/durable.py) in a worker thread, one change
at a time per user.  A file that cannot be read as JSON is set aside
(``<name>.json.corrupt``), logged, and read as empty.
"""

from __future__ import annotations

import json
import os

from twisted.internet import defer, threads
from zope.interface import implementer

from mailnet.durable import writeAtomically
from mailnet.jmap.core import accountIdFor
from mailnet.jmap.identity import IUserData
from mailnet.logs import Logger

log = Logger()

MAX_FILE = 4 * 1024 * 1024
NAME = frozenset({"identities"})


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
            with open(path, "rb") as f:
                data = f.read(MAX_FILE + 1)
        except FileNotFoundError:
            return None
        try:
            if len(data) > MAX_FILE:
                raise ValueError("too large")
            value = json.loads(data)
            if not isinstance(value, dict):
                raise ValueError("not an object")
            return value
        except ValueError as e:
            os.replace(path, path + ".corrupt")
            log.error("jmap: a user data file was unreadable ({why}); set aside as .corrupt", why=str(e)[:100])
            return None

    def _write(self, path, value):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        writeAtomically(path, json.dumps(value, indent=1, sort_keys=True).encode("utf-8"), mode=0o600)

    def load(self, username, name):
        return self.runInThread(self._read, self._path(username, name))

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
