"""
``mailnet-recent``: a folder's first recent UID (RFC 3501 s2.3.2 ``\\Recent``),
our own file beside Dovecot's (which keeps the same number in the header of
its ``dovecot.index``, ``first_recent_uid``, and ignores this file)::

    mailnet-recent 1 V<uidvalidity> R<first recent uid>

Messages with a UID at or above it have not been seen by a session that
selected the folder.  No file: no session ever claimed a message of the
folder (a new folder, one made by another program, or one from before this
file existed), so every message is recent.  A file for another UIDVALIDITY
(the folder was deleted and made again, or its UIDs were rebuilt) counts
as none.

Written by replacing it (a temporary file renamed over it), without fsync:
a write lost in a crash only makes some messages recent once more.  A file
that cannot be parsed (such a crash on a file system that does not keep
rename after write in order) is reported once and taken as "nothing is
recent", never as an error.
"""

from __future__ import annotations

import os
import re

from twisted.logger import Logger

log = Logger()

RECENT_FILE = "mailnet-recent"
_LINE = re.compile(rb"mailnet-recent 1 V(\d+) R(\d+)\n?\Z")


def readFirstRecent(path, uidValidity, uidNext, where=None):
    """(Thread.)  The first recent UID of the folder at ``path``; 1 when there is no file."""
    try:
        with open(os.path.join(path, RECENT_FILE), "rb") as f:
            data = f.read(200)
    except FileNotFoundError:
        return 1
    except OSError as e:
        log.warn("maildir: cannot read {file} of {where}: {e}", file=RECENT_FILE, where=where or "a folder",
                 e=e.strerror or type(e).__name__)
        return uidNext
    m = _LINE.match(data)
    if m is None:
        log.warn("maildir: {file} of {where} is not valid, taking no message as recent", file=RECENT_FILE,
                 where=where or "a folder")
        return uidNext
    if int(m.group(1)) != uidValidity:
        return 1
    return max(1, int(m.group(2)))


def writeFirstRecent(path, uidValidity, firstRecent):
    """(Thread.)  Replace the folder's ``mailnet-recent``; False when the folder is gone."""
    tmp = os.path.join(path, RECENT_FILE + ".new")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except FileNotFoundError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(b"mailnet-recent 1 V%d R%d\n" % (uidValidity, firstRecent))
    try:
        os.rename(tmp, os.path.join(path, RECENT_FILE))
    except FileNotFoundError:
        return False
    return True
