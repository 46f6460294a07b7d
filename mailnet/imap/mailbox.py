"""
The selected-state view of one mailbox for one session.

The client's idea of the mailbox is a list of UIDs in ascending order; a
message's sequence number (MSN) is its position in that list plus one.  The
list is an ``array('I')`` (4 bytes a message) and lookups are bisections, so
a 100,000-message mailbox costs 400 KB per session and no per-message
objects.

The store tells every open handle's listeners of changes at once; the view
only records them as *pending* and the session announces them
(:meth:`SelectedMailbox.flush`) at the moments the RFCs allow:

* RFC 3501 s7.4.1 / RFC 9051 s7.5.1: EXPUNGE never while no command is in
  progress, and never during FETCH, STORE or SEARCH (the UID forms are
  fine), so that sequence numbers do not shift under the client.
* EXISTS and FETCH FLAGS at the end of any command, and at once in IDLE.

Until an expunge is announced its message keeps its sequence number; it
simply cannot be read any more.
"""

from __future__ import annotations

import bisect
from array import array

from zope.interface import implementer

from mailnet.imap import serialize
from mailnet.store.interfaces import DELETED, SEEN, IFolderListener


class RecentRegistry:
    """
    \\Recent (RFC 3501 s2.3.2): a message is recent to the first read-write
    session that selects its mailbox after it arrived (or that is told of it
    while selected).  The store keeps where that stands with the folder
    (``IFolder.firstRecentUid`` / ``claimRecent``), so it holds for messages
    that arrived while no session had the folder open, across restarts, and
    starts again for a folder deleted and created again.  For a store
    without it, the marks are kept here, in memory (messages that were there
    before this process saw the folder are not recent).
    """

    def __init__(self):
        self._marks = {}

    def claim(self, key, folder, uids):
        """Claim ``uids`` (ascending) for a read-write session; return the recent ones."""
        if getattr(folder, "firstRecentUid", None) is not None:
            if not uids:
                return []
            first = folder.claimRecent(uids[-1])
            return list(uids[bisect.bisect_left(uids, first):])
        mark = self._marks.get(key)
        if mark is None:
            # First sight of this mailbox in this process: nothing is recent.
            mark = self._marks[key] = folder.uidNext - 1
        recent = list(uids[bisect.bisect_right(uids, mark):])
        if recent:
            self._marks[key] = recent[-1]
        return recent

    def peek(self, key, uids, folder=None):
        """The recent ones for a read-only session or STATUS (claims nothing)."""
        first = getattr(folder, "firstRecentUid", None)
        if first is not None:
            return list(uids[bisect.bisect_left(uids, first):])
        mark = self._marks.get(key)
        if mark is None:
            return []
        return list(uids[bisect.bisect_right(uids, mark):])


class FolderKeeper:
    """
    Keep recently used folders open for a while after their last session
    went away, so that the store keeps their index in memory: re-selecting a
    100,000-message mailbox then costs a fraction of a millisecond instead
    of a reload from disk.  Bounded: at most ``size`` folders, each for at
    most ``linger`` seconds after its last use (least recently used first).
    """

    def __init__(self, clock, linger=300.0, size=100):
        import collections

        self.clock = clock
        self.linger = linger
        self.size = size
        self._held = collections.OrderedDict()  # key -> (handle or None while opening, last use)
        self._snapshots = {}  # key -> Snapshot of a kept folder
        self._sweeper = None

    def snapshot(self, key, folder):
        """The remembered :class:`Snapshot` of a kept folder if it is still current, else None."""
        snap = self._snapshots.get(key)
        if snap is not None and snap.state == Snapshot.stateOf(folder):
            return snap
        return None

    def remember(self, key, snap):
        if key in self._held:
            self._snapshots[key] = snap

    def touch(self, key, account, name):
        """Note a use of folder ``name`` of ``account``; open a keeper handle if there is none."""
        if not self.linger or not self.size:
            return
        now = self.clock.seconds()
        held = self._held.get(key)
        if held is not None:
            self._held[key] = (held[0], now)
            self._held.move_to_end(key)
            return
        self._held[key] = (None, now)

        def opened(handle):
            if key in self._held and self._held[key][0] is None:
                self._held[key] = (handle, self._held[key][1])
            else:
                handle.close()

        def failed(f):
            if key in self._held and self._held[key][0] is None:
                del self._held[key]

        account.openFolder(name).addCallbacks(opened, failed)
        while len(self._held) > self.size:
            old, (handle, _) = self._held.popitem(last=False)
            self._snapshots.pop(old, None)
            if handle is not None:
                handle.close()
        if self._sweeper is None:
            self._sweeper = self.clock.callLater(self.linger, self._sweep)

    def forget(self, user, name):
        """Drop keepers of a folder and its children (DELETE, RENAME)."""
        for key in [k for k in self._held if k[0] == user and (k[1] == name or k[1].startswith(name + "/"))]:
            self._snapshots.pop(key, None)
            handle, _ = self._held.pop(key)
            if handle is not None:
                handle.close()

    def _sweep(self):
        self._sweeper = None
        cutoff = self.clock.seconds() - self.linger
        for key in [k for k, (_, used) in self._held.items() if used <= cutoff]:
            self._snapshots.pop(key, None)
            handle, _ = self._held.pop(key)
            if handle is not None:
                handle.close()
        if self._held:
            oldest = min(used for _, used in self._held.values())
            self._sweeper = self.clock.callLater(max(1.0, oldest + self.linger - self.clock.seconds()), self._sweep)

    def close(self):
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        self._snapshots.clear()
        while self._held:
            _, (handle, _) = self._held.popitem()
            if handle is not None:
                handle.close()

    def __len__(self):
        return len(self._held)


class Snapshot:
    """
    What SELECT computes from a folder's index (UID list, keywords, first
    unseen), remembered with the folder's state so that the next SELECT of
    an unchanged folder copies it instead of walking every message.  Any
    change (new, expunged or re-flagged message) raises HIGHESTMODSEQ.
    """

    __slots__ = ("state", "uids", "keywords", "firstUnseen")

    def __init__(self, state, uids, keywords, firstUnseen):
        self.state = state
        self.uids = uids
        self.keywords = keywords
        self.firstUnseen = firstUnseen

    @staticmethod
    def stateOf(folder):
        return (folder.uidValidity, folder.uidNext, folder.highestModSeq)

    @classmethod
    def build(cls, folder):
        state = cls.stateOf(folder)
        infos = folder.messages()
        uids = array("I", [m.uid for m in infos])
        firstUnseen = None
        for i, m in enumerate(infos):
            if SEEN not in m.flags:
                firstUnseen = i + 1
                break
        # Few distinct flag sets exist even in a large mailbox.
        keywords = frozenset(f for flagset in {m.flags for m in infos} for f in flagset if f[0] != "\\")
        return cls(state, uids, keywords, firstUnseen)


@implementer(IFolderListener)
class SelectedMailbox:
    """
    @ivar folder: the open IFolder.
    @ivar name: the mailbox name (str, store form).
    @ivar readOnly: EXAMINE (or no write access).
    @ivar uids: array of the UIDs the client knows, ascending.
    """

    def __init__(self, folder, name, readOnly, key, recentRegistry, wake=None, snapshot=None):
        self.folder = folder
        self.name = name
        self.readOnly = readOnly
        self.key = key
        self.recentRegistry = recentRegistry
        self.wake = wake  # called when something became pending
        self.uidValidity = folder.uidValidity
        if snapshot is None:
            snapshot = Snapshot.build(folder)
        self.snapshot = snapshot
        self.uids = array("I", snapshot.uids)
        self.firstUnseen = snapshot.firstUnseen
        self.keywords = keywords = set(snapshot.keywords)
        if readOnly:
            self.recent = set(recentRegistry.peek(key, self.uids, folder))
        else:
            self.recent = set(recentRegistry.claim(key, folder, self.uids))
        self.pendingNew = []  # uids not yet announced by EXISTS
        self.pendingExpunged = set()  # known uids gone from the store
        self.pendingFlags = {}  # uid -> None: ordered set of uids with changed flags
        self.savedSearch = None  # RFC 5182 $: list of UIDs
        # RFC 5267 contexts (mailnet.imap.context): tag -> Context, and the
        # UIDs added or re-flagged since they were last brought up to date
        # (None while no context is kept: nothing is recorded).
        self.contexts = {}
        self.changed = None
        self.lastExists = len(self.uids)
        self.lastRecent = len(self.recent)
        self.sentKeywords = frozenset(keywords)
        self.showRecent = True
        folder.addListener(self)

    def close(self):
        self.folder.removeListener(self)
        self.folder.close()

    # Lookups

    def __len__(self):
        return len(self.uids)

    def msnOf(self, uid):
        """The MSN of a known UID, or None."""
        uids = self.uids
        i = bisect.bisect_left(uids, uid)
        if i < len(uids) and uids[i] == uid:
            return i + 1
        return None

    def maxUid(self):
        return self.uids[-1] if self.uids else 0

    def resolve(self, seqset, uid):
        """
        ``[(msn, uid), ...]`` ascending, for a sequence set of MSNs or (with
        ``uid``) UIDs.  Unknown UIDs are ignored (RFC 3501 s6.4.8); MSNs
        beyond the mailbox raise ValueError (answered with BAD).
        """
        uids = self.uids
        if seqset.saved:
            saved = self.savedSearch or []
            out = []
            for u in saved:
                m = self.msnOf(u)
                if m is not None:
                    out.append((m, u))
            return out
        if uid:
            out = []
            for lo, hi in seqset.resolve(self.maxUid()):
                i = bisect.bisect_left(uids, lo)
                j = bisect.bisect_right(uids, hi)
                out.extend(zip(range(i + 1, j + 1), uids[i:j]))
            return out
        n = len(uids)
        out = []
        for lo, hi in seqset.resolve(n):
            if hi > n:
                raise ValueError("Message sequence number %d is beyond the last message (%d)" % (hi, n))
            out.extend(zip(range(lo, hi + 1), uids[lo - 1:hi]))
        return out

    # IFolderListener: record only; the session announces.

    def messagesAdded(self, folder, infos):
        if self.changed is not None:
            self.changed.update(info.uid for info in infos)
        top = self.pendingNew[-1] if self.pendingNew else self.maxUid()
        for info in infos:
            if info.uid > top:
                self.pendingNew.append(info.uid)
                top = info.uid
                if info.flags:
                    for f in info.flags:
                        if f[0] != "\\":
                            self.keywords.add(f)
        if not self.readOnly:
            claimed = self.recentRegistry.claim(self.key, folder, self.pendingNew)
            self.recent.update(claimed)
        if self.wake:
            self.wake()

    def flagsChanged(self, folder, infos):
        changed = self.changed
        for info in infos:
            self.pendingFlags[info.uid] = None
            if changed is not None:
                changed.add(info.uid)
            for f in info.flags:
                if f[0] != "\\":
                    self.keywords.add(f)
        if self.wake:
            self.wake()

    def messagesExpunged(self, folder, uids):
        pendingNew = self.pendingNew
        if self.changed is not None:
            self.changed.difference_update(uids)
        for uid in uids:
            if pendingNew and uid >= pendingNew[0]:
                try:
                    pendingNew.remove(uid)
                    continue
                except ValueError:
                    pass
            if self.msnOf(uid) is not None:
                self.pendingExpunged.add(uid)
            self.pendingFlags.pop(uid, None)
            self.recent.discard(uid)
        if self.wake:
            self.wake()

    def hasPending(self, allowExpunge=True):
        return bool(self.pendingNew or self.pendingFlags or (allowExpunge and self.pendingExpunged)
                    or self.keywords != self.sentKeywords)

    # Announcing

    def flush(self, allowExpunge, condstore=False, qresync=False, rev2=False):
        """
        The untagged responses for everything pending that may be said now,
        as a list of byte lines; the view is updated to match.
        """
        out = []
        if allowExpunge and self.pendingExpunged:
            out += self._flushExpunged(qresync)
        out += self.keywordLines()
        if self.pendingNew:
            self.uids.extend(self.pendingNew)
            self.pendingNew = []
        if len(self.uids) != self.lastExists:
            self.lastExists = len(self.uids)
            out.append(b"* %d EXISTS\r\n" % self.lastExists)
            if not rev2:
                # RFC 3501 s7.3.2: RECENT goes with EXISTS (IMAP4rev2 has none).
                self.lastRecent = len(self.recent)
                out.append(b"* %d RECENT\r\n" % self.lastRecent)
        if self.pendingFlags:
            pending = self.pendingFlags
            self.pendingFlags = {}
            get = self.folder.get
            for uid in pending:
                if uid in self.pendingExpunged:
                    continue
                msn = self.msnOf(uid)
                info = get(uid)
                if msn is None or info is None:
                    continue
                out.append(self.fetchFlagsLine(msn, info, condstore))
        return out

    def keywordLines(self):
        """
        ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` when keywords came up since
        they were last sent, else nothing: RFC 3501 s7.2.6, a new keyword is
        announced before any FETCH that shows it.  A FLAGS response may be
        sent at any time, so the session sends these before every command's
        own responses, and STORE before the FETCHes of the flags it set.
        """
        if self.keywords == self.sentKeywords:
            return []
        self.sentKeywords = frozenset(self.keywords)
        return [b"* FLAGS " + self.flagsList() + b"\r\n",
                b"* OK [PERMANENTFLAGS " + self.permanentFlags() + b"] Flags permitted\r\n"]

    def _flushExpunged(self, qresync):
        gone = sorted(self.pendingExpunged)
        self.pendingExpunged = set()
        uids = self.uids
        out = []
        if qresync:
            # RFC 7162 s3.2.10: VANISHED instead of EXPUNGE.
            out.append(b"* VANISHED " + serialize.seqset(gone) + b"\r\n")
        else:
            # Highest first, so earlier numbers stay valid as we go.
            for uid in reversed(gone):
                msn = self.msnOf(uid)
                if msn is not None:
                    out.append(b"* %d EXPUNGE\r\n" % msn)
        goneSet = set(gone)
        self.uids = array("I", [u for u in uids if u not in goneSet])
        self.lastExists = len(self.uids)
        if self.savedSearch:
            self.savedSearch = [u for u in self.savedSearch if u not in goneSet]
        return out

    def fetchFlagsLine(self, msn, info, condstore):
        flags = self.flagsFor(info)
        if condstore:
            return b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (msn, info.uid, serialize.flags(flags), info.modseq)
        return b"* %d FETCH (UID %d FLAGS %s)\r\n" % (msn, info.uid, serialize.flags(flags))

    def flagsFor(self, info):
        if self.showRecent and info.uid in self.recent:
            return info.flags | {"\\Recent"}
        return info.flags

    def flagsList(self):
        return serialize.plist([b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft"]
                               + [k.encode("utf-8", "replace") for k in sorted(self.keywords)])

    def permanentFlags(self):
        if self.readOnly:
            return b"()"
        return serialize.plist([b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft"]
                               + [k.encode("utf-8", "replace") for k in sorted(self.keywords)] + [b"\\*"])

    def deletedUids(self, within=None):
        """Known UIDs with \\Deleted (optionally only those in ``within``), ascending."""
        if within is None:
            # EXPUNGE: few messages are \Deleted; one pass over the folder's
            # index finds them faster than a lookup per known UID.
            pending = self.pendingExpunged
            return [m.uid for m in self.folder.messages()
                    if DELETED in m.flags and m.uid not in pending and self.msnOf(m.uid) is not None]
        get = self.folder.get
        out = []
        for uid in within:
            if uid in self.pendingExpunged:
                continue
            info = get(uid)
            if info is not None and DELETED in info.flags:
                out.append(uid)
        return out
