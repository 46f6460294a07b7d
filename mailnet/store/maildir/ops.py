"""Changing a loaded folder, adding messages, reading a message file."""

from __future__ import annotations

import errno
import os

from mailnet.durable import fsyncDir
from mailnet.store.base import flagChanges
from mailnet.store.interfaces import MessageInfo, NoSuchMessage, StoreError
from mailnet.store.maildir.crlf import readCanonical
from mailnet.store.maildir.keywords import withoutKeywords
from mailnet.store.maildir.locks import lockAll
from mailnet.store.maildir.modlog import ModLog
from mailnet.store.maildir.names import messageGuid, newBase, sizesFromBase, splitName
from mailnet.store.maildir.quota import accountPathOf
from mailnet.store.maildir.state import Batch, dirStamp, linkOrCopy


class FolderOperations:
    """
    Part of :class:`~mailnet.store.maildir.disk.Disk`: what the reactor
    asks of a folder, each under the folder lock in a worker thread.
    """

    # Operations on a loaded folder

    def opRefresh(self):
        return self.refresh()

    def requireFull(self):
        if self.full is None:
            raise StoreError("folder is not open")

    def opSetFlags(self, uids, flags, mode, unchangedSince):
        with self.locked():
            self.requireFull()
            delta = self.sync(moveNew=False)
            full = self.full
            kw = self.keywords
            batch = Batch()
            todo, failed = flagChanges(full.infos, uids, flags, mode, unchangedSince)
            changedInfos = []
            if todo:
                m = self.newModseq()
                renames = []
                kwChanged = False
                for info, new in todo:
                    rel = full.where[info.uid]
                    base, oldInfo = splitName(rel[4:])
                    infoStr, c = kw.infoFor(new, oldInfo)
                    kwChanged |= c
                    renames.append((info, rel, "cur/" + base + ":2," + infoStr, infoStr))
                if kwChanged:
                    # The letters must be on disk before names that use them.
                    kw.write()
                    fsyncDir(self.path)
                token = self.checkpoint()
                for info, rel, target, infoStr in renames:
                    if rel != target:
                        try:
                            os.rename(os.path.join(self.path, rel), os.path.join(self.path, target))
                        except FileNotFoundError:
                            full.dirty = True  # changed behind our back
                            continue
                        batch.dirs.add(os.path.join(self.path, target[:3]))
                        batch.dirs.add(os.path.join(self.path, rel[:3]))
                    full.where[info.uid] = target
                    full.inNew.discard(info.uid)
                    updated = MessageInfo(info.uid, kw.flagsFromInfo(infoStr), info.internalDate, info.size, m)
                    full.infos[info.uid] = updated
                    batch.lines.append(ModLog.flagged(m, info.uid, infoStr))
                    changedInfos.append(updated)
                self.restamp(token)
                self.flush(batch)
            delta.changed.extend(changedInfos)
            return changedInfos, failed, self.finish(delta)

    def opExpunge(self, uids):
        with self.locked():
            self.requireFull()
            delta = self.sync(moveNew=False)
            full = self.full
            batch = Batch()
            removed = []
            m = None
            token = self.checkpoint()
            freed = 0
            for uid in uids:
                rel = full.where.get(uid)
                if rel is None:
                    continue
                try:
                    os.unlink(os.path.join(self.path, rel))
                except FileNotFoundError:
                    pass
                info = full.infos.get(uid)
                freed += info.size if info is not None else 0
                if m is None:
                    m = self.newModseq()
                batch.dirs.add(os.path.join(self.path, rel[:3]))
                self._dropMessage(uid, rel[4:].partition(":")[0])
                batch.lines.append(ModLog.expunged(m, uid))
                full.expunged.append((m, uid))
                full.expungedSet.add(uid)
                delta.expunged.append((m, uid))
                removed.append(uid)
            if removed:
                self.restamp(token)
            self.flush(batch)
            if removed:  # maildirsize (quota.py): one line
                self.store.quota.changed(accountPathOf(self.path), -freed, -len(removed))
            return removed, self.finish(delta)

    def opTransfer(self, dest, uids, move):
        """COPY or MOVE ``uids`` into ``dest`` (both loaded here)."""
        with lockAll(self, dest):
            self.requireFull()
            dest.requireFull()
            srcDelta = self.sync(moveNew=False)
            destDelta = srcDelta if dest is self else dest.sync(moveNew=False)
            full, dfull = self.full, dest.full
            items = [full.infos[uid] for uid in uids if uid in full.infos]
            pairs = []
            if items:
                batch = Batch()
                dbatch = batch if dest is self else Batch()
                m = dest.newModseq()
                uid = dest.uidlist.nextUid
                tokens = [(d, d.checkpoint()) for d in {self, dest}]
                for info in items:
                    rel = full.where[info.uid]
                    oldBase, oldInfo = splitName(rel[4:])
                    base, ext = _targetName(oldBase, full.ext.get(info.uid, ()), info.size, move, dfull.recs)
                    if dest is not self:
                        # The source's keyword letters mean other keywords
                        # (or none yet) in dest: info.flags has them by name.
                        oldInfo = withoutKeywords(oldInfo)
                    infoStr, kwChanged = dest.keywords.infoFor(info.flags, oldInfo)
                    if kwChanged:
                        dest.keywords.write()
                        fsyncDir(dest.path)
                    target = "cur/" + base + ":2," + infoStr
                    src = os.path.join(self.path, rel)
                    dst = os.path.join(dest.path, target)
                    try:
                        if move:
                            try:
                                os.rename(src, dst)
                            except OSError as e:
                                if e.errno != errno.EXDEV:
                                    raise
                                linkOrCopy(src, dst)
                                os.unlink(src)
                        else:
                            linkOrCopy(src, dst)
                    except FileNotFoundError:
                        full.dirty = True  # gone behind our back
                        continue
                    dbatch.dirs.add(os.path.join(dest.path, "cur"))
                    dbatch.records.append((uid, base, ext))
                    if ext:
                        dfull.ext[uid] = ext
                    dbatch.lines.append(ModLog.added(m, uid, info.internalDate, info.size, infoStr))
                    dest.uidlist.lastUid = max(dest.uidlist.lastUid, uid)
                    new = MessageInfo(uid, dest.keywords.flagsFromInfo(infoStr), info.internalDate, info.size, m)
                    dfull.recs[base] = uid
                    dfull.byBase[base] = uid
                    dfull.where[uid] = target
                    dfull.infos[uid] = new
                    destDelta.added.append(new)
                    pairs.append((info.uid, uid, rel))
                    uid += 1
                if move and pairs:
                    if dest is not self:
                        # The copies are durable before the originals go.
                        dest.flush(dbatch)
                    xm = self.newModseq()
                    for srcUid, _, rel in pairs:
                        batch.dirs.add(os.path.join(self.path, rel[:3]))
                        self._dropMessage(srcUid, rel[4:].partition(":")[0])
                        batch.lines.append(ModLog.expunged(xm, srcUid))
                        full.expunged.append((xm, srcUid))
                        full.expungedSet.add(srcUid)
                        srcDelta.expunged.append((xm, srcUid))
                    self.flush(batch)
                else:
                    dest.flush(dbatch)
                    # A copy adds to the account's usage (maildirsize, quota.py).
                    copied = {uid for uid, _, _ in pairs}
                    self.store.quota.changed(accountPathOf(dest.path),
                                             sum(i.size for i in items if i.uid in copied), len(pairs))
                for d, token in tokens:
                    d.restamp(token)
            result = [(s, d) for s, d, _ in pairs]
            if dest is self:
                return result, self.finish(srcDelta), None
            return result, self.finish(srcDelta), dest.finish(destDelta)

    # Adding messages (the committer; loaded or blind)

    def addMessages(self, jobs):
        """
        Link committed message files into this folder and give them UIDs.
        ``jobs`` are ``(job, recipientIndex)``.  Returns
        ``([(job, index, uid)], delta or None)``.
        """
        with self.locked():
            full = self.full
            if full is not None:
                # Learn what others appended; the next refresh lists dirs.
                delta = self.sync(moveNew=False, listDirs=False)
            else:
                delta = None
                self._ensureLogs()
                # The change journal's check (see Disk.blindStamps).
                known = self.blindStamps is not None and self.blindStamps == self._dirStamps()
            batch = Batch()
            self._refreshKeywords()
            kw = self.keywords
            infoCache = {}
            m = self.newModseq()
            uid = self.uidlist.nextUid
            out = []
            placed = []
            token = self.checkpoint()
            try:
                for job, idx in jobs:
                    base = job.baseFor(idx)
                    flags = job.flags
                    if flags:
                        infoStr = infoCache.get(flags)
                        if infoStr is None:
                            infoStr, changed = kw.infoFor(flags)
                            infoCache[flags] = infoStr
                            if changed:
                                kw.write()
                                fsyncDir(self.path)
                        rel = f"cur/{base}:2,{infoStr}"
                    else:
                        infoStr = ""
                        rel = "new/" + base
                    target = os.path.join(self.path, rel)
                    if len(job.targets) == 1:
                        # The only recipient: move the file, no link needed.
                        os.rename(job.tmpPath, target)
                    else:
                        linkOrCopy(job.tmpPath, target)
                    placed.append(target)
                    batch.dirs.add(os.path.join(self.path, rel[:3]))
                    batch.records.append((uid, base, ()))
                    batch.lines.append(ModLog.added(m, uid, job.date, job.size, infoStr))
                    out.append((job, idx, uid, rel, infoStr, base))
                    uid += 1
                self.uidlist.lastUid = max(self.uidlist.lastUid, uid - 1)
                self.restamp(token)
                self.flush(batch)
                if full is None:
                    self.blindStamps = self._dirStamps() if known else None
                if out:  # maildirsize (quota.py): one line, no scan
                    self.store.quota.changed(accountPathOf(self.path), sum(o[0].size for o in out), len(out))
            except BaseException:
                if not batch.recorded:
                    # Nothing was given a UID: take the files back out.
                    for path in placed:
                        try:
                            os.unlink(path)
                        except OSError:
                            pass
                if full is not None:
                    full.dirty = True
                self.blindStamps = None
                self.uidlist.reset()  # re-read the truth next time
                raise
            if full is not None:
                for job, idx, u, rel, infoStr, base in out:
                    info = MessageInfo(u, kw.flagsFromInfo(infoStr), job.date, job.size, m)
                    full.recs[base] = u
                    full.byBase[base] = u
                    full.where[u] = rel
                    if rel[0] == "n":
                        full.inNew.add(u)
                    full.infos[u] = info
                    delta.added.append(info)
            out = [(job, idx, u) for job, idx, u, _, _, _ in out]
            return out, (self.finish(delta) if full is not None else None)

    def _dirStamps(self):
        return (dirStamp(os.path.join(self.path, "new")), dirStamp(os.path.join(self.path, "cur")))

    def place(self, items):
        """
        Group commit into this folder.  ``items`` are ``(job, recipientIndex)``
        with durable files.  The first thread here places everything pending
        with one :meth:`addMessages`; threads arriving meanwhile queue their
        items and wait, and one of them leads the next round.  Returns
        ``([(job, index, uid)], delta or None)`` for ``items``, or the
        exception that failed them.
        """
        slot = [items, None]
        cond = self.placeCond
        with cond:
            self.placeQueue.append(slot)
            while slot[1] is None and self.placing:
                cond.wait()
            if slot[1] is not None:
                return slot[1]
            self.placing = True
            slots, self.placeQueue = self.placeQueue, []
        outcomes = []
        try:
            placed, delta = self.addMessages([item for s in slots for item in s[0]])
            start = 0
            for s in slots:
                outcomes.append((placed[start:start + len(s[0])], delta))
                start += len(s[0])
        except BaseException as e:
            outcomes = [e] * len(slots)
        finally:
            with cond:
                for s, outcome in zip(slots, outcomes or [RuntimeError("placing failed")] * len(slots)):
                    s[1] = outcome
                self.placing = False
                cond.notify_all()
        return slot[1]

    # Reading a message (no lock: look the name up, retry if renamed)

    def openKnown(self, uid, size):
        """
        (On the reactor thread.)  Open the message at the name the index
        last saw, without listing anything: for a small file, open(2),
        fstat(2), read(2) and close(2).  Returns None when that name is
        gone (another program renamed or deleted the file since the last
        sync): :meth:`openMessage` in a worker thread then looks for it by
        listing the directories.
        """
        full = self.full
        rel = full.where.get(uid) if full is not None else None
        if rel is None:
            raise NoSuchMessage(uid)
        try:
            return readCanonical(self.path + "/" + rel, size)
        except FileNotFoundError:
            return None

    def openMessage(self, uid, size):
        full = self.full
        rel = full.where.get(uid) if full is not None else None
        if rel is None:
            raise NoSuchMessage(uid)
        base = rel[4:].partition(":")[0]
        for _ in range(3):
            try:
                return readCanonical(os.path.join(self.path, rel), size)
            except FileNotFoundError:
                rel = self._findBase(base)
                if rel is None:
                    raise NoSuchMessage(uid) from None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.EINVAL):
                    # Replaced by a symlink or a non-file: not followed.
                    self._unreadable(rel, e)
                    raise NoSuchMessage(uid) from None
                raise
        raise NoSuchMessage(uid)

    def _findBase(self, base):
        for sub in ("cur", "new"):
            try:
                for name in os.listdir(os.path.join(self.path, sub)):
                    if name == base or name.startswith(base + ":"):
                        return f"{sub}/{name}"
            except FileNotFoundError:
                return None
        return None


def _targetName(oldBase, oldExt, size, move, destRecords):
    """
    The base name and uidlist fields of a copied or moved message in its
    destination.  A COPY is a new message: a new base name, so a new
    GUID (and email id).  A MOVE keeps the message's GUID: it keeps its
    base name (and record fields), or, when the destination has a record
    of that name already (a move into the same folder), it gets a new
    base name and the old GUID in a ``G`` field, as Dovecot records a
    GUID that is not the file name.
    """
    if move and oldBase not in destRecords:
        return oldBase, tuple(oldExt)
    s, _ = sizesFromBase(oldBase)
    base = newBase() + (f",S={s}" if s is not None else "") + f",W={size}"
    if move:
        guid = messageGuid(oldBase, oldExt)
        if guid and not any(c.isspace() or c == ":" for c in guid):
            return base, ("G" + guid,)
    return base, ()
