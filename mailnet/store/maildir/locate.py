"""
Finding a message by email id in an account (``IAccount.findEmail``).

An email id is a function of the message's Dovecot GUID (its base file
name, or the ``G`` field of its uidlist record; see :mod:`.names`), and
every message with a UID has a record in its folder's ``dovecot-uidlist``.
So the account-wide index is derived from the uidlists alone: per folder,
a reader positioned in ``dovecot-uidlist`` and a map ``emailId -> {uid:
base}``.  A lookup stats each folder's uidlist and reads only what was
appended since the last lookup (a replaced file is read again whole);
message files are never opened.  Nothing of it is written to disk, so
there is nothing to lose in a crash and nothing to rebuild but the map,
which the first lookup after a start builds from the uidlists (the ids
come out the same: they are in the names).

A uidlist keeps the records of expunged messages until it is compacted,
so a candidate is checked: against the open folder's index when this
process has it loaded, else by listing the folder's new/ and cur/ for
its base name.
"""

from __future__ import annotations

import os
import re
import threading

from twisted.logger import Logger

from mailnet.store.interfaces import INBOX
from mailnet.store.maildir.files import CorruptFile, UidList
from mailnet.store.maildir.layout import folderNameOf
from mailnet.store.maildir.names import emailIdOf, messageGuid

log = Logger()

# RFC 8620 s1.2: the Id data type.
ID_SYNTAX = re.compile(r"[A-Za-z0-9_-]{1,255}")


class _FolderIds:
    """The email ids of one folder's uidlist records."""

    def __init__(self, path):
        self.reader = UidList(path)
        self.ids = {}  # emailId -> {uid: base}
        self.bases = {}  # base -> (emailId, uid)

    def update(self):
        replaced, records = self.reader.readNew()
        if replaced:
            self.ids = {}
            self.bases = {}
        ids, bases = self.ids, self.bases
        for uid, base, ext in records:
            old = bases.get(base)
            if old is not None:
                # A later record of the same name wins (as in the folder).
                uids = ids.get(old[0], {})
                uids.pop(old[1], None)
                if not uids:
                    ids.pop(old[0], None)
            emailId = emailIdOf(messageGuid(base, ext))
            bases[base] = (emailId, uid)
            ids.setdefault(emailId, {})[uid] = base


class EmailLocator:
    """The email-id index of one account (used from worker threads)."""

    def __init__(self, store, accountPath):
        self.store = store
        self.path = accountPath
        self._lock = threading.Lock()
        self._folders = {}  # directory name ("" for INBOX) -> _FolderIds
        self.uidlistReads = 0  # for tests: uidlists (re)read

    def _folderDirs(self):
        dirs = [""]
        for entry in os.scandir(self.path):
            if entry.name[:1] == "." and entry.is_dir() and folderNameOf(entry.name) is not None:
                dirs.append(entry.name)
        return sorted(dirs)

    def find(self, emailId):
        """(Thread.)  ``(folderName, uid)`` of the message, or None."""
        if not isinstance(emailId, str) or not ID_SYNTAX.fullmatch(emailId):
            return None
        candidates = []
        with self._lock:
            dirs = self._folderDirs()
            for gone in set(self._folders) - set(dirs):
                del self._folders[gone]
            for dirname in dirs:
                entry = self._folders.get(dirname)
                if entry is None:
                    entry = self._folders[dirname] = _FolderIds(os.path.join(self.path, dirname))
                offset, ino = entry.reader.offset, entry.reader.ino
                try:
                    entry.update()
                except CorruptFile:
                    # Set aside and rebuilt when the folder is next opened.
                    entry.reader.reset()
                    entry.ids = {}
                    continue
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if (entry.reader.offset, entry.reader.ino) != (offset, ino):
                    self.uidlistReads += 1
                found = entry.ids.get(emailId)
                if found:
                    candidates.append((dirname, sorted(found.items())))
        for dirname, uids in candidates:
            folderPath = os.path.join(self.path, dirname) if dirname else self.path
            for uid, base in uids:
                if self._live(folderPath, uid, base):
                    return (folderNameOf(dirname) if dirname else INBOX), uid
        return None

    def _live(self, folderPath, uid, base):
        """Whether ``uid`` (file ``base``) is still in the folder."""
        disk = self.store.disks.find(folderPath)
        full = disk.full if disk is not None else None
        if full is not None and uid in full.infos:
            return full.recs.get(base) == uid
        prefix = base + ":"
        for sub in ("cur", "new"):
            try:
                with os.scandir(os.path.join(folderPath, sub)) as entries:
                    for e in entries:
                        name = e.name
                        if name == base or name.startswith(prefix):
                            return True
            except FileNotFoundError:
                continue
        return False
