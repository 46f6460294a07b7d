"""Our per-folder sidecar ``mailnet-modseq`` (modseqs, dates, sizes)."""

from __future__ import annotations

import os
import secrets

from mailnet.durable import writeAll
from mailnet.store.maildir.files import (
    ENCODING,
    ERRORS,
    CorruptFile,
    IndexFile,
    completeLines,
    openIndex,
    unlinkQuietly,
)



class ModLog(IndexFile):
    """
    Our per-folder sidecar ``mailnet-modseq``: an append-only log, written
    under the uidlist dotlock, that Dovecot ignores::

        mailnet-modseq 1 V<uidvalidity> E<floor>
        a <modseq> <uid> <internaldate> <size> :<info>   message added (or known)
        f <modseq> <uid> :<info>                         flags changed
        x <modseq> <uid>                                 expunged
        h <modseq>                                       highest modseq mark
        r <modseq>                                       reservation (see below)
        c <modseq>                                       clean close (see below)

    Every line carries its modseq explicitly and lines are appended in
    modseq order, so the last change line holds HIGHESTMODSEQ.  ``info`` is
    the file name part after ``:2,`` when the line was written, so a flag
    change made by another program is noticed even across restarts.
    Expunges at or below the floor ``E`` are not known.

    Reservations.  Appends are not fsynced, except when a modseq above the
    last reservation is handed out: then an ``r <modseq + RESERVE>`` line is
    appended and the file fdatasynced before anyone is told.  Whoever reads
    the log cold (a new process, a reload) continues above the last
    reservation, so after an OS crash that lost unsynced lines no modseq
    is ever handed out twice and HIGHESTMODSEQ never goes backwards.  What
    the lost lines said is found again from the files themselves: a date
    from the mtime, flags from the name (a change is a new modseq), an
    expunge from the missing file.  A process that has read the log before
    knows nothing was lost since (a crash would have killed it too), and a
    log whose last line is ``c`` (written with fdatasync at a clean
    shutdown) lost nothing: then there is no need to skip ahead.
    """

    NAME = "mailnet-modseq"
    MAGIC = "mailnet-modseq"
    RESERVE = 1000

    def reset(self):
        self.ino = None
        self.offset = 0
        self.uidValidity = 0
        self.floor = 0
        self.highest = 0
        self.reserved = 0
        self.exists = False
        self.lines = 0
        self.lastKind = None

    def stamp(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def allocate(self):
        """The next modseq (the caller appends its lines before unlocking)."""
        self.highest += 1
        return self.highest

    def _parseHeader(self, line):
        parts = line.split(" ")
        if len(parts) < 2 or parts[0] != self.MAGIC or parts[1] != "1":
            raise CorruptFile("bad modseq header")
        for token in parts[2:]:
            if token[:1] in ("V", "E") and not (token[1:].isascii() and token[1:].isdigit()):
                raise CorruptFile("bad modseq header")
            if token[:1] == "V":
                self.uidValidity = int(token[1:])
            elif token[:1] == "E":
                self.floor = int(token[1:])

    def _parse(self, text, out):
        highest = self.highest
        reserved = self.reserved
        n = 0
        append = out.append
        kind = None
        for line in text.split("\n"):
            if not line:
                continue
            kind = line[0]
            try:
                if kind == "a":
                    head, _, info = line.partition(" :")
                    _, m, uid, date, size = head.split(" ")
                    m = int(m)
                    append(("a", m, int(uid), float(date), int(size), info))
                elif kind == "f":
                    head, _, info = line.partition(" :")
                    _, m, uid = head.split(" ")
                    m = int(m)
                    append(("f", m, int(uid), info))
                elif kind == "x":
                    _, m, uid = line.split(" ")
                    m = int(m)
                    append(("x", m, int(uid)))
                elif kind == "h" or kind == "c":
                    m = int(line.split(" ")[1])
                elif kind == "r":
                    r = int(line.split(" ")[1])
                    if r > reserved:
                        reserved = r
                    n += 1
                    continue
                else:
                    continue
            except ValueError:
                # A damaged line: skip it; modseqs only need to grow.
                continue
            n += 1
            if m > highest:
                highest = m
        self.highest = highest
        self.reserved = reserved
        self.lines += n
        if kind is not None:
            self.lastKind = kind

    def _cold(self, sawReservation):
        """
        After reading the file cold: lines after the last fsync may have
        been lost in a crash, but never beyond the last reservation.
        """
        if self.lastKind == "c":
            self.reserved = max(self.reserved, self.highest)
            return
        if sawReservation:
            self.highest = max(self.highest, self.reserved)
        else:
            self.highest += self.RESERVE
        self.reserved = self.highest

    def readNew(self, trustIno=None):
        """
        Like :meth:`UidList.readNew`; entries are the parsed lines.
        ``trustIno``: this process read that file before, so a cold read of
        it need not skip ahead of a possible crash.
        """
        replaced, st, text, used = self._appended()
        if st is None:
            return replaced, []
        entries = []
        cold = self.offset == 0
        if cold:
            nl = text.find("\n")
            if nl < 0:
                raise CorruptFile("modseq log without a header")
            self._parseHeader(text[:nl])
            text = text[nl + 1 :]
        self._parse(text, entries)
        if cold:
            if trustIno is not None and trustIno == st.st_ino:
                self.reserved = max(self.reserved, self.highest)
            else:
                self._cold(self.reserved > 0)
        self.ino = st.st_ino
        self.offset += used
        self.exists = True
        return replaced, entries

    def readHeaderAndLast(self):
        """Header and HIGHESTMODSEQ from the last lines; positions at the end."""
        fd = openIndex(self.path)
        if fd is None:
            self.reset()
            return
        try:
            st = os.fstat(fd)
            head = os.pread(fd, 512, 0)
            nl = head.find(b"\n")
            if nl < 0:
                raise CorruptFile("modseq log without a header")
            self.reset()
            self._parseHeader(head[:nl].decode(ENCODING, ERRORS))
            self.highest = self.floor
            size = st.st_size
            start = max(nl + 1, size - 16384)
            tail = os.pread(fd, size - start, start)
            complete, used = completeLines(tail)
            if start > nl + 1:
                complete = complete[complete.find(b"\n") + 1 :]
            # Every line of the window: the last change line and the last
            # reservation (if it is that recent) are what matter.
            self._parse(complete.decode(ENCODING, ERRORS), [])
            self._cold(self.reserved > 0)
            self.ino = st.st_ino
            self.offset = start + used
            self.exists = True
        finally:
            os.close(fd)

    def append(self, lines):
        """
        Append formatted lines; caller holds the lock.  fdatasync only when
        a modseq beyond the reservation was handed out (then reserve more).
        """
        sync = self.highest > self.reserved
        if not lines and not sync:
            return
        if sync:
            lines = list(lines)
            lines.append(f"r {self.highest + self.RESERVE}\n")
        data = "".join(lines).encode(ENCODING, ERRORS)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end > self.offset and self.ino is not None:
                os.ftruncate(fd, self.offset)  # a crashed writer's partial line
                end = self.offset
            os.lseek(fd, end, os.SEEK_SET)
            writeAll(fd, data)
            if sync:
                os.fdatasync(fd)
            self.ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        self.offset = end + len(data)
        if sync:
            self.reserved = self.highest + self.RESERVE
        self.exists = True
        self.lines += len(lines)
        self.lastKind = lines[-1][0]

    def markClean(self):
        """At shutdown: make the log durable and say nothing is missing."""
        if not self.exists or self.ino is None or self.lastKind == "c":
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if st.st_ino != self.ino or st.st_size != self.offset:
            return  # someone else wrote since; they will mark it
        self.reserved = max(self.reserved, self.highest + 1)  # no reservation line
        self.append([f"c {self.highest}\n"])
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def added(m, uid, date, size, info):
        return f"a {m} {uid} {date!r} {size} :{info}\n"

    @staticmethod
    def flagged(m, uid, info):
        return f"f {m} {uid} :{info}\n"

    @staticmethod
    def expunged(m, uid):
        return f"x {m} {uid}\n"

    def create(self, folderPath, uidValidity, highest, floor, body=()):
        """Write a new log (header, ``body`` lines, marks) atomically."""
        tmp = os.path.join(folderPath, f".{self.NAME}.tmp.{os.getpid()}.{secrets.token_hex(4)}")
        reserved = highest + self.RESERVE
        text = (
            f"{self.MAGIC} 1 V{uidValidity} E{floor}\n"
            + "".join(body)
            + f"h {highest}\nr {reserved}\n"
        )
        data = text.encode(ENCODING, ERRORS)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                writeAll(fd, data)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except BaseException:
            unlinkQuietly(tmp)  # a full disk must not leave it behind
            raise
        st = os.stat(self.path)
        self.ino = st.st_ino
        self.offset = len(data)
        self.uidValidity = uidValidity
        self.floor = floor
        self.highest = highest
        self.reserved = reserved
        self.exists = True
        self.lines = len(body) + 2
        self.lastKind = "r"
