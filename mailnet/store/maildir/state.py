"""
What the thread side keeps per folder, and what it hands the reactor:
the full index of a loaded folder (:class:`Full`), the writes collected
under the lock (:class:`Batch`), the changes for the reactor-side mirror
(:class:`Delta`), and small directory helpers.
"""

from __future__ import annotations

import os
import re
import time

from mailnet import durable
from mailnet.store.maildir import tuning

_DIGITS = re.compile(r"(\d+)")


def naturalKey(name):
    """Sort key comparing runs of digits by value: "1.M9P1" < "1.M10P1"."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(name)]


class Delta:
    """
    What a worker changed in a loaded folder, numbered per folder (``seq``)
    so that the reactor-side index applies deltas in order.
    """

    __slots__ = ("seq", "added", "changed", "expunged", "uidValidity", "uidNext", "highest", "floor", "reset", "mailboxId")

    def __init__(self):
        self.seq = 0
        self.added = []
        self.changed = []
        self.expunged = []  # (modseq, uid)
        self.reset = False

    def empty(self):
        return not (self.added or self.changed or self.expunged or self.reset)


class Full:
    """The complete thread-side index of a loaded folder."""

    def __init__(self):
        self.infos = {}  # uid -> MessageInfo
        self.where = {}  # uid -> "cur/<name>" or "new/<name>"
        self.byBase = {}  # base -> uid, live messages
        self.recs = {}  # base -> uid, every uidlist record
        self.ext = {}  # uid -> extension fields of its uidlist record
        self.inNew = set()  # uids whose file is in new/
        self.pending = {}  # uid -> ("a", modseq, uid, date, vsize, info) sidecar lines not matched yet
        self.pendingX = {}  # uid -> modseq of sidecar expunge lines not applied yet
        self.expunged = []  # (modseq, uid) ascending
        self.expungedSet = set()
        self.stamps = {"new": None, "cur": None}
        self.dirty = True  # list the directories at the next sync
        self.verifyAfter = 0  # ... or once this time has passed
        self.uidValidity = 0
        self.mailboxId = None  # the uidlist header's G<guid>
        # A write under the lock failed: this index may be ahead of the
        # disk (and of what the reactor was told); rebuilt at the next sync.
        self.broken = False
        self.expungedMark = 0  # len(expunged) when the lock was taken


class Batch:
    """Writes collected under the lock, done by :meth:`Disk.flush`."""

    def __init__(self):
        self.records = []  # (uid, base, ext) for dovecot-uidlist
        self.lines = []  # sidecar lines
        self.dirs = set()  # directories to fsync
        self.keywords = False
        self.rewriteUidlist = False
        self.recorded = False


def byUid(info):
    """Sort key of MessageInfos."""
    return info.uid


def unsettledUntil(*stamps):
    """When directories with these stamps can be trusted not to change unseen."""
    if tuning.DIR_SETTLE_SECS <= 0:
        return 0
    now = time.time()
    latest = max((s[1] for s in stamps if s), default=0) / 1e9
    return latest + tuning.DIR_SETTLE_SECS if now - latest < tuning.DIR_SETTLE_SECS else 0


def dirStamp(path):
    """``(inode, mtime_ns)`` of a directory, or None if it is gone."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def linkOrCopy(src, dst):
    """Hard-link, or copy (then fsync) through the Maildir's tmp/ across file systems."""
    tmp = dst.rsplit("/", 2)[0] + "/tmp/" + os.path.basename(dst).split(":")[0]
    durable.linkOrCopy(src, dst, tmp)
