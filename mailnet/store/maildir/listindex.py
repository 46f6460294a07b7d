"""
The Maildir side of the message-list index (:mod:`mailnet.store.summaries`):
the account's ``mailnet-list.sqlite`` and the *stamps* that tell, without
opening a folder, whether it may have changed since it was last indexed.
"""

from __future__ import annotations

import os
import stat
import time

from mailnet.mail.summary import READ_LIMIT
from mailnet.store.interfaces import INBOX
from mailnet.store.maildir.files import CorruptFile, UidList, isMailboxGuid
from mailnet.store.maildir.layout import folderNameOf
from mailnet.store.maildir.names import emailIdOf, messageGuid
from mailnet.store.summaries import summaryOf

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


# System flags as Dovecot writes them in a name's info (":2,<letters>", sorted).
_SYSTEM_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}


def readDelivered(store, folderPath, items):
    """
    (Blocking.)  The list fields of messages just delivered into the
    folder at ``folderPath``, read from their files without opening the
    folder (which would move new/ to cur/, as a mail client's look does):
    ``items`` are ``(base, uid, internalDate, size, flags)``.  Returns
    ``(mailboxId, [(emailId, uid, received, size, fieldsJson)], {uid:
    header})``, or None when the folder's mailbox id cannot be read (the
    next catch-up indexes them).  A file not found (expunged meanwhile)
    is left out.
    """
    disk = store.disks.find(folderPath)
    full = disk.full if disk is not None else None
    mailbox = getattr(full, "mailboxId", None)
    if mailbox is None:
        uidlist = UidList(folderPath)
        try:
            uidlist.readHeaderAndLast()
        except (CorruptFile, OSError):
            return None
        mailbox = uidlist.guid if isMailboxGuid(uidlist.guid) else None
        if mailbox is None:
            return None
    entries, headers = [], {}
    inCur = None
    for base, uid, date, size, flags in items:
        data = None
        names = [os.path.join("new", base),
                 os.path.join("cur", base + ":2," + "".join(sorted(_SYSTEM_LETTERS.get(f, "") for f in flags)))]
        for rel in names:
            data = _read(os.path.join(folderPath, rel))
            if data is not None:
                break
        if data is None:
            if inCur is None:  # renamed since (flags, keywords): look once per batch
                inCur = {}
                try:
                    with os.scandir(os.path.join(folderPath, "cur")) as it:
                        for e in it:
                            inCur[e.name.partition(":")[0]] = e.name
                except OSError:
                    pass
            name = inCur.get(base)
            data = _read(os.path.join(folderPath, "cur", name)) if name else None
        if data is None:
            continue
        fields, headers[uid] = summaryOf(data)
        entries.append((emailIdOf(messageGuid(base, ())), uid, date, size, fields))
    return mailbox, entries, headers


def _read(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        out = []
        left = READ_LIMIT
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 17))
            if not chunk:
                break
            out.append(chunk)
            left -= len(chunk)
        return b"".join(out)
    except OSError:
        return None
    finally:
        os.close(fd)
