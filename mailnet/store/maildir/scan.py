"""Listing a folder's new/ and cur/ and reconciling them with the index."""

from __future__ import annotations

import os
import stat

from twisted.logger import Logger

from mailnet.durable import fsyncDir
from mailnet.store.interfaces import MessageInfo, NoSuchFolder
from mailnet.store.maildir import tuning
from mailnet.store.maildir.modlog import ModLog
from mailnet.store.maildir.names import canonicalSize, extValue, sizesFromBase, splitName
from mailnet.store.maildir.state import byUid, naturalKey

log = Logger()


class DirectoryScan:
    """
    Part of :class:`~mailnet.store.maildir.disk.Disk`: the directory scan
    that :meth:`Disk.sync` runs under the lock.
    """

    def _list(self):
        """
        {base: "sub/name"} for new/ and cur/ (cur/ wins duplicates).  Only
        regular files count: a directory, fifo, socket, device or symlink
        (which could point anywhere) is skipped, with one log line per name.
        """
        out = {}
        skipped = set()
        for sub in ("new", "cur"):
            prefix = sub + "/"
            try:
                entries = os.scandir(os.path.join(self.path, sub))
            except FileNotFoundError:
                raise NoSuchFolder(self.folderName) from None
            with entries:
                for entry in entries:
                    name = entry.name
                    if name[:1] == ".":
                        continue
                    try:
                        # d_type from readdir; lstat only where the file
                        # system does not say (DT_UNKNOWN).
                        regular = entry.is_file(follow_symlinks=False)
                    except OSError:
                        regular = False
                    if not regular:
                        skipped.add(prefix + name)
                        continue
                    colon = name.find(":")
                    out[name if colon < 0 else name[:colon]] = prefix + name
        self._noteSkipped(skipped)
        return out

    def _noteSkipped(self, skipped):
        """Log each entry that is not a regular file once (not at every scan)."""
        for rel in sorted(skipped - self.skipped):
            log.warn(
                "maildir {folder}: {entry} is not a regular file; skipped",
                folder=self.label(),
                entry=rel,
            )
        self.skipped = skipped

    def _seen(self, uid, rel, batch, modseq, changed):
        """A known message is at ``rel``; note a rename or flag change."""
        full = self.full
        if rel == full.where[uid]:
            return
        full.where[uid] = rel
        if rel[0] == "n":
            full.inNew.add(uid)
        else:
            full.inNew.discard(uid)
        info = full.infos[uid]
        infoStr = splitName(rel[4:])[1]
        flags = self.keywords.flagsFromInfo(infoStr)
        if flags == info.flags:
            return
        p = full.pending.pop(uid, None)
        if p is not None and p[5] == infoStr and p[1] > info.modseq:
            m = p[1]  # another mailnet did it and logged it
        else:
            m = modseq()
            batch.lines.append(ModLog.flagged(m, uid, infoStr))
        new = MessageInfo(uid, flags, info.internalDate, info.size, m)
        full.infos[uid] = new
        changed[uid] = new

    def _reconcile(self, listing, batch, delta, modseq, initial=False):
        full = self.full
        changed = {}
        missing = []
        # Known messages: moved, renamed for flags, or gone.
        for base, uid in list(full.byBase.items()):
            rel = listing.pop(base, None)
            if rel is None:
                missing.append((uid, base))
            else:
                self._seen(uid, rel, batch, modseq, changed)
        if missing:
            # readdir() can miss a file renamed meanwhile: look once more.
            again = self._list()
            for uid, base in missing:
                rel = again.get(base)
                if rel is not None:
                    listing.pop(base, None)
                    self._seen(uid, rel, batch, modseq, changed)
                    continue
                self._dropMessage(uid, base)
                xm = full.pendingX.pop(uid, None)
                if xm is None:
                    xm = modseq()
                    batch.lines.append(ModLog.expunged(xm, uid))
                full.pending.pop(uid, None)
                delta.expunged.append((xm, uid))
                full.expunged.append((xm, uid))
                full.expungedSet.add(uid)
        # New files.
        added = []
        if listing:
            fresh = []
            recs, expungedSet, infos = full.recs, full.expungedSet, full.infos
            pending, where, byBase, inNew = full.pending, full.where, full.byBase, full.inNew
            flagCache = {}
            flagsFromInfo = self.keywords.flagsFromInfo
            for base, rel in listing.items():
                uid = recs.get(base)
                if uid is None or uid in expungedSet or uid in infos:
                    # No record, or an expunged file came back: a new message.
                    fresh.append((base, rel))
                    continue
                p = pending.get(uid)
                if p is not None:
                    # The common case (our own files): all we need is known.
                    colon = rel.find(":", 4)
                    infoStr = rel[colon + 3 :] if colon > 0 and rel[colon + 1 : colon + 3] == "2," else ""
                    if p[5] == infoStr:
                        flags = flagCache.get(infoStr)
                        if flags is None:
                            flags = flagCache[infoStr] = flagsFromInfo(infoStr)
                        del pending[uid]
                        info = infos[uid] = MessageInfo(uid, flags, p[3], p[4], p[1])
                        where[uid] = rel
                        byBase[base] = uid
                        if rel[0] == "n":
                            inNew.add(uid)
                        added.append(info)
                        continue
                self.touchLock()
                info = self._adopt(uid, base, rel, batch, modseq)
                if info is not None:
                    added.append(info)
            if fresh:
                # Arrival order: names start with numbers (seconds, then
                # M<usec> or a counter), so compare digit runs as numbers
                # ("M9" before "M10").
                fresh.sort(key=lambda item: naturalKey(item[0]))
                uid = self.uidlist.nextUid
                for n, (base, rel) in enumerate(fresh):
                    if n % 500 == 0:
                        self.touchLock()
                    info = self._adopt(uid, base, rel, batch, modseq, newRecord=True)
                    if info is not None:
                        added.append(info)
                        uid += 1
        # Sidecar lines that match no file.
        for uid in list(full.pending):
            p = full.pending.pop(uid)
            info = full.infos.get(uid)
            if info is not None:
                if p[1] > info.modseq and uid not in changed:
                    # Another mailnet changed it (and maybe back again).
                    new = MessageInfo(uid, info.flags, info.internalDate, info.size, p[1])
                    full.infos[uid] = changed[uid] = new
            elif uid not in full.expungedSet:
                xm = modseq()
                batch.lines.append(ModLog.expunged(xm, uid))
                full.expunged.append((xm, uid))
                full.expungedSet.add(uid)
        for uid, xm in list(full.pendingX.items()):
            if uid not in full.infos:
                del full.pendingX[uid]
                if uid not in full.expungedSet:
                    full.expunged.append((xm, uid))
                    full.expungedSet.add(uid)
        if initial:
            # UIDs with neither a file nor an expunge line: expunged while
            # we did not look (by another program, or lines lost in a
            # crash).  Say so now, and drop their records so that this
            # happens once.
            dead = [
                uid
                for uid in full.recs.values()
                if uid not in full.infos and uid not in full.expungedSet
            ]
            if dead:
                xm = modseq()
                for uid in sorted(dead):
                    batch.lines.append(ModLog.expunged(xm, uid))
                    full.expunged.append((xm, uid))
                    full.expungedSet.add(uid)
                batch.rewriteUidlist = True
        full.expunged.sort()
        added.sort(key=byUid)
        delta.added.extend(added)
        delta.changed.extend(changed[u] for u in sorted(changed))

    def _adopt(self, uid, base, rel, batch, modseq, newRecord=False):
        """Take a file into the index as ``uid``; returns its MessageInfo."""
        full = self.full
        infoStr = splitName(rel[4:])[1]
        flags = self.keywords.flagsFromInfo(infoStr)
        p = None if newRecord else full.pending.pop(uid, None)
        path = os.path.join(self.path, rel)
        if p is not None:
            _, m, _, date, vsize, oldInfo = p
            if oldInfo != infoStr and self.keywords.flagsFromInfo(oldInfo) != flags:
                m = modseq()
                batch.lines.append(ModLog.flagged(m, uid, infoStr))
        else:
            try:
                st = os.lstat(path)  # a symlink is not followed
            except FileNotFoundError:
                return None
            except OSError as e:
                return self._unreadable(rel, e)
            if not stat.S_ISREG(st.st_mode):
                self._noteSkipped(self.skipped | {rel})
                return None
            date = st.st_mtime
            _, w = sizesFromBase(base)
            vsize = w if w is not None else extValue(full.ext.get(uid, ()), "W")
            if vsize is None:
                try:
                    _, vsize = canonicalSize(path)
                except FileNotFoundError:
                    return None
                except OSError as e:
                    return self._unreadable(rel, e)
            m = modseq()
            batch.lines.append(ModLog.added(m, uid, date, vsize, infoStr))
        if newRecord:
            ext = ()
            if sizesFromBase(base)[1] is None:
                # Cache the CRLF size in the record, as Dovecot does.
                ext = (f"W{vsize}",)
                full.ext[uid] = ext
            batch.records.append((uid, base, ext))
            self.uidlist.lastUid = max(self.uidlist.lastUid, uid)
        full.recs[base] = uid
        full.byBase[base] = uid
        full.where[uid] = rel
        if rel[0] == "n":
            full.inNew.add(uid)
        info = MessageInfo(uid, flags, date, vsize, m)
        full.infos[uid] = info
        return info

    def _unreadable(self, rel, error):
        """A file we cannot read (permissions, replaced by a non-file): skip it."""
        if rel not in self.unreadable:
            log.warn(
                "maildir {folder}: cannot read {entry} ({error}); skipped",
                folder=self.label(),
                entry=rel,
                error=error.strerror or type(error).__name__,
            )
            self.unreadable.add(rel)
        return None

    def _dropMessage(self, uid, base):
        full = self.full
        full.inNew.discard(uid)
        full.infos.pop(uid, None)
        full.where.pop(uid, None)
        full.byBase.pop(base, None)
        full.ext.pop(uid, None)

    def _moveNewToCur(self, batch):
        """Dovecot moves new/ files to cur/ when a client syncs; so do we."""
        full = self.full
        moved = False
        inNew, full.inNew = full.inNew, set()
        for n, uid in enumerate(inNew):
            if n % 1000 == 0:
                self.touchLock()
            rel = full.where.get(uid)
            if rel is None or rel[:4] != "new/":
                continue
            target = "cur/" + rel[4:] + ":2,"
            try:
                os.rename(os.path.join(self.path, rel), os.path.join(self.path, target))
            except FileNotFoundError:
                full.dirty = True
                continue
            full.where[uid] = target
            moved = True
        if moved:
            batch.dirs.add(os.path.join(self.path, "new"))
            batch.dirs.add(os.path.join(self.path, "cur"))
        return moved

    def _maybeCompact(self, batch):
        full = self.full
        live = len(full.infos)
        if self.uidlist.lines > 2 * live + tuning.UIDLIST_SLACK:
            batch.rewriteUidlist = True
        if self.modlog.lines > 2 * (live + min(len(full.expunged), tuning.KEEP_EXPUNGED)) + tuning.MODLOG_SLACK:
            self._compactModlog(batch)

    def _compactModlog(self, batch):
        """Rewrite the sidecar as a snapshot; keep the newest expunges."""
        full = self.full
        ml = self.modlog
        m = self.newModseq()
        batch.lines = []  # folded into the snapshot
        body = []
        for uid in sorted(full.infos):
            info = full.infos[uid]
            body.append(ModLog.added(info.modseq, uid, info.internalDate, info.size, splitName(full.where[uid][4:])[1]))
        kept = full.expunged[-tuning.KEEP_EXPUNGED:]
        dropped = full.expunged[: len(full.expunged) - len(kept)]
        floor = ml.floor
        if dropped:
            floor = max(floor, max(x for x, _ in dropped))
        for xm, uid in kept:
            body.append(ModLog.expunged(xm, uid))
        full.expunged = list(kept)
        full.expungedSet = {uid for _, uid in kept}
        # Records of forgotten expunges must go too (see _reconcile).
        batch.rewriteUidlist = True
        # Renamed into place after the current batch's names are durable.
        for d in batch.dirs:
            fsyncDir(d)
        batch.dirs = set()
        self._recreateModlog(False, body, highest=m, floor=floor)
