"""
The Maildir side of the message-list index (:mod:`mailnet.store.summaries`):
the account's ``mailnet-list.sqlite`` and the *stamps* that tell, without
opening a folder, whether it may have changed since it was last indexed.
"""

from __future__ import annotations

import os
import time

from mailnet.store.interfaces import INBOX
from mailnet.store.maildir.layout import folderNameOf

# A directory changed this recently may change again within the same
# timestamp tick without its mtime moving: its stamp is not trusted.
SETTLE = 2.0


def folderStamps(accountPath):
    """
    (Blocking.)  ``{folderName: stamp}`` of every folder of the account:
    the identity, size and mtime of ``dovecot-uidlist`` and the mtimes of
    new/ and cur/ (a delivery, a flag rename, an expunge or another
    program's file changes one of them); None for a folder that changed
    in the last SETTLE seconds or could not be looked at ("look inside").
    """
    out = {INBOX: _stamp(accountPath)}
    for entry in os.scandir(accountPath):
        if entry.name[:1] == "." and entry.is_dir(follow_symlinks=False):
            name = folderNameOf(entry.name)
            if name is not None:
                out[name] = _stamp(entry.path)
    return out


def _stamp(path):
    try:
        u = os.stat(os.path.join(path, "dovecot-uidlist"))
        n = os.stat(os.path.join(path, "new"))
        c = os.stat(os.path.join(path, "cur"))
    except OSError:
        return None
    newest = max(u.st_mtime, n.st_mtime, c.st_mtime)
    if time.time() - newest < SETTLE:
        return None
    return "%d:%d:%d/%d/%d" % (u.st_ino, u.st_size, u.st_mtime_ns, n.st_mtime_ns, c.st_mtime_ns)
