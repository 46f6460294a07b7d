"""
The small files of a Maildir++ folder, read and written the way Dovecot does:
``dovecot-uidlist``, ``dovecot-keywords``, and our own ``mailnet-modseq``
sidecar; plus message file-name helpers.  No locking here: callers hold the
folder's dotlock (see :mod:`mailnet.store._dotlock`) for every write.

All file names are ``str`` (``os.fsdecode``/surrogateescape), so names that
are not UTF-8 survive a round trip.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat

from mailnet.store.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

ENCODING = "utf-8"
ERRORS = "surrogateescape"


def fsyncDir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def writeAll(fd, data: bytes):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def appendDurably(path, data: bytes, expectOffset=None):
    """
    Append ``data`` to the existing file ``path`` and fdatasync.  When
    ``expectOffset`` is given and the file is longer (a partial line left by
    a crashed writer), the excess is cut first.  Returns ``(size, inode)``.
    """
    fd = os.open(path, os.O_WRONLY)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        if expectOffset is not None and end > expectOffset:
            os.ftruncate(fd, expectOffset)
            end = expectOffset
        os.lseek(fd, end, os.SEEK_SET)
        writeAll(fd, data)
        os.fdatasync(fd)
        return end + len(data), os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _unlinkQuietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _openIndex(path):
    """A descriptor of the index file ``path`` (None if missing); anything
    but a regular file is :class:`CorruptFile`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CorruptFile(f"cannot read it: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CorruptFile("not a regular file")
    return fd


def _readFrom(path, offset):
    """(stat, bytes from offset) or (None, b"") if missing."""
    fd = _openIndex(path)
    if fd is None:
        return None, b""
    try:
        st = os.fstat(fd)
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return st, b"".join(chunks)
    finally:
        os.close(fd)


def _completeLines(data: bytes):
    """Split off a trailing partial line: (complete part, consumed length)."""
    end = data.rfind(b"\n") + 1
    return data[:end], end


class CorruptFile(Exception):
    pass


def setAside(path):
    """
    Move a corrupt index file out of the way (``<name>.corrupt``, the
    previous one replaced) so that it can be rebuilt and still be looked
    at.  Returns False when it could not be moved (then it is rebuilt over).
    """
    try:
        os.rename(path, path + ".corrupt")
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


# dovecot-uidlist


class UidList:
    """
    ``dovecot-uidlist`` (version 3, reads version 1 too)::

        3 V<uidvalidity> N<nextuid> G<guid> [other header fields]
        <uid> [<ext fields>] :<base file name>

    The reader state (inode, offset of the first unread byte, header values,
    highest UID seen) lets callers read only what was appended since.
    """

    NAME = "dovecot-uidlist"

    def __init__(self, folderPath):
        self.path = os.path.join(folderPath, self.NAME)
        self.reset()

    def reset(self):
        self.ino = None
        self.offset = 0
        self.version = 3
        self.uidValidity = 0
        self.hdrNext = 0
        self.lastUid = 0
        self.guid = None
        self.hdrExtra = []
        self.exists = False
        self.lines = 0

    @property
    def nextUid(self):
        return max(self.hdrNext, self.lastUid + 1, 1)

    def stamp(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _parseHeader(self, line: str):
        parts = line.split(" ")
        if not parts or not parts[0].isdigit():
            raise CorruptFile("bad uidlist header")
        version = int(parts[0])
        uv = nxt = 0
        guid = None
        extra = []
        if version == 1:
            if len(parts) < 3 or not (parts[1].isdigit() and parts[2].isdigit()):
                raise CorruptFile("bad v1 uidlist header")
            uv, nxt = int(parts[1]), int(parts[2])
        elif version == 3:
            for token in parts[1:]:
                if not token:
                    continue
                key, value = token[0], token[1:]
                if key in "VN" and not (value.isascii() and value.isdigit()):
                    raise CorruptFile("bad uidlist header")
                if key == "V":
                    uv = int(value)
                elif key == "N":
                    nxt = int(value)
                elif key == "G":
                    guid = value
                else:
                    extra.append(token)
        else:
            raise CorruptFile(f"unsupported uidlist version {version}")
        if uv <= 0 or nxt <= 0:
            raise CorruptFile("uidlist header without uidvalidity or next uid")
        self.version, self.uidValidity, self.hdrNext = version, uv, nxt
        self.guid, self.hdrExtra = guid, extra

    def _parseRecords(self, text: str, out):
        """Parse records into ``out`` (a list of tuples or a _Into)."""
        last = self.lastUid
        append = out.append
        n = 0
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        v3 = self.version == 3
        for line in text.split("\n"):
            if not line:
                continue
            if v3:
                # "<uid> [<ext> ...] :<filename>": the file name starts at
                # the first token that starts with a colon.
                head, sep, filename = line.partition(" :")
                if not sep:
                    raise CorruptFile(f"bad uidlist record {line!r}")
                if " " in head:
                    uidText, *ext = head.split(" ")
                    ext = tuple(e for e in ext if e)
                else:
                    uidText, ext = head, ()
            else:
                uidText, _, filename = line.partition(" ")
                ext = ()
            try:
                uid = int(uidText)
            except ValueError:
                raise CorruptFile(f"bad uidlist record {line!r}") from None
            if not filename or uid <= 0:
                raise CorruptFile(f"bad uidlist record {line!r}")
            if uid > last:
                last = uid
            colon = filename.find(":")
            append((uid, filename if colon < 0 else filename[:colon], ext))
            n += 1
        self.lines += n
        self.lastUid = last

    def readNew(self):
        """
        Read what is new since the last call.

        @return: ``(replaced, records)``: ``replaced`` is True when the whole
            file was (re)read because it is new to us or was replaced, in
            which case ``records`` is every record; else the appended ones.
            Records are ``(uid, base, ext)``.  A missing file gives
            ``(True, [])`` with ``exists`` false.
        @raise CorruptFile: unparseable; the caller recreates it (as
            Dovecot does).
        """
        st = None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            pass
        if st is None:
            wasKnown = self.exists
            self.reset()
            return wasKnown or True, []
        if st.st_ino == self.ino and st.st_size == self.offset:
            return False, []
        replaced = st.st_ino != self.ino or st.st_size < self.offset
        if replaced:
            self.reset()
        st, data = _readFrom(self.path, self.offset)
        if st is None:
            self.reset()
            return True, []
        data, used = _completeLines(data)
        text = data.decode(ENCODING, ERRORS)
        records = []
        if self.offset == 0:
            nl = text.find("\n")
            if nl < 0:
                if used == 0 and st.st_size == 0:
                    raise CorruptFile("empty uidlist")
                raise CorruptFile("uidlist without a complete header")
            header = text[:nl].rstrip("\r")
            self._parseHeader(header)
            text = text[nl + 1 :]
        self._parseRecords(text, records)
        self.ino = st.st_ino
        self.offset += used
        self.exists = True
        return replaced, records

    def readTail(self):
        """
        Blind mode: catch up cheaply.  Appended lines are read; a new or
        replaced file is read only at its head and tail.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.reset()
            return
        if st.st_ino == self.ino and st.st_size >= self.offset:
            if st.st_size > self.offset:
                self.readNew()
        else:
            self.readHeaderAndLast()

    def readHeaderAndLast(self):
        """
        Cheap read for a writer that needs only the header and the highest
        UID: the first line and the last complete record.  Positions the
        reader at the end, so later :meth:`readNew` calls see only appends.
        """
        fd = _openIndex(self.path)
        if fd is None:
            self.reset()
            return
        try:
            st = os.fstat(fd)
            head = os.pread(fd, 4096, 0)
            nl = head.find(b"\n")
            if nl < 0:
                raise CorruptFile("uidlist without a complete header")
            self.reset()
            self._parseHeader(head[:nl].decode(ENCODING, ERRORS).rstrip("\r"))
            size = st.st_size
            start = max(nl + 1, size - 8192)
            tail = os.pread(fd, size - start, start)
            complete, used = _completeLines(tail)
            if start > nl + 1:
                # Drop the (probably cut) first line of the window.
                first = complete.find(b"\n") + 1
                complete = complete[first:]
            recs = []
            lines = complete.decode(ENCODING, ERRORS).split("\n")
            for line in reversed(lines):
                if line.strip():
                    self._parseRecords(line, recs)
                    break
            self.ino = st.st_ino
            self.offset = start + used
            self.exists = True
        finally:
            os.close(fd)

    @staticmethod
    def formatRecord(uid, base, ext=()):
        if ext:
            return f"{uid} {' '.join(ext)} :{base}\n"
        return f"{uid} :{base}\n"

    def append(self, records):
        """Append ``(uid, base, ext)`` records durably; caller holds the lock."""
        data = "".join(self.formatRecord(*r) for r in records).encode(ENCODING, ERRORS)
        self.offset, self.ino = appendDurably(self.path, data, self.offset)
        for uid, _, _ in records:
            if uid > self.lastUid:
                self.lastUid = uid
        self.lines += len(records)

    def render(self, records, nextUid=None):
        """The whole file for ``records`` (sorted by uid)."""
        if self.guid is None or len(self.guid) != 32:
            self.guid = secrets.token_hex(16)
        nxt = max(nextUid or 0, self.nextUid, records[-1][0] + 1 if records else 1)
        head = f"3 V{self.uidValidity} N{nxt} G{self.guid}"
        if self.hdrExtra:
            head += " " + " ".join(self.hdrExtra)
        body = "".join(self.formatRecord(*r) for r in records)
        return (head + "\n" + body).encode(ENCODING, ERRORS), nxt

    def replaceWith(self, lock, records, nextUid=None):
        """
        Rewrite the file through the held dotlock (write into the lock file,
        fsync, rename over): this releases the lock, so it must be the last
        thing done under it.
        """
        data, nxt = self.render(records, nextUid)
        lock.writeAndReplace(data)
        st = os.stat(self.path)
        self.version = 3
        self.hdrNext = nxt
        self.lastUid = records[-1][0] if records else 0
        self.ino = st.st_ino
        self.offset = len(data)
        self.exists = True
        self.lines = len(records)


# mailnet-modseq


class ModLog:
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

    def __init__(self, folderPath):
        self.path = os.path.join(folderPath, self.NAME)
        self.reset()

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
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.reset()
            return True, []
        if st.st_ino == self.ino and st.st_size == self.offset:
            return False, []
        replaced = st.st_ino != self.ino or st.st_size < self.offset
        if replaced:
            self.reset()
        st, data = _readFrom(self.path, self.offset)
        if st is None:
            self.reset()
            return True, []
        data, used = _completeLines(data)
        text = data.decode(ENCODING, ERRORS)
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

    def readTail(self):
        """
        Blind mode: catch up cheaply.  Appended lines are read; a new or
        replaced file is read only at its head and tail.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.reset()
            return
        if st.st_ino == self.ino and st.st_size >= self.offset:
            if st.st_size > self.offset:
                self.readNew()
        else:
            self.readHeaderAndLast()

    def readHeaderAndLast(self):
        """Header and HIGHESTMODSEQ from the last lines; positions at the end."""
        fd = _openIndex(self.path)
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
            complete, used = _completeLines(tail)
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
            _unlinkQuietly(tmp)  # a full disk must not leave it behind
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


# dovecot-keywords

# Maildir info letters for system flags.  Dovecot knows only D F R S T and
# keeps $Forwarded as a keyword (a letter through dovecot-keywords); it
# ignores "P" (passed, as mutt writes it) but keeps it in the name.  So we
# read "P" as $Forwarded, write $Forwarded as a keyword letter (so that
# Dovecot sees it), and keep an old "P" only while $Forwarded stays set.
FORWARDED = "$Forwarded"
PASSED = "P"
LETTER_FLAGS = {"D": DRAFT, "F": FLAGGED, PASSED: FORWARDED, "R": ANSWERED, "S": SEEN, "T": DELETED}
FLAG_LETTERS = {v.lower(): k for k, v in LETTER_FLAGS.items() if v != FORWARDED}
MAX_KEYWORDS = 26


def _goodKeyword(name):
    """An IMAP atom (RFC 3501 s9 flag-keyword): what a line may name."""
    return bool(name) and name.isprintable() and not any(c in name for c in ' (){%*"\\]') and name[0] != "\\"


class Keywords:
    """``dovecot-keywords``: ``<index> <name>`` lines; index 0 is letter ``a``."""

    NAME = "dovecot-keywords"

    def __init__(self, folderPath):
        self.folderPath = folderPath
        self.path = os.path.join(folderPath, self.NAME)
        self.names = [None] * MAX_KEYWORDS
        self.byLower = {}
        self.badLines = 0
        self._stamp = None

    def refresh(self):
        """Re-read if the file changed; returns True when it did."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        names = [None] * MAX_KEYWORDS
        bad = 0
        if stamp is not None:
            try:
                _, data = _readFrom(self.path, 0)
            except CorruptFile:
                # Not a file (a directory, say): nothing to rebuild it from.
                self._stamp = None
                raise
            text = data.decode(ENCODING, ERRORS)
            byLower = {}
            for line in text.splitlines():
                if not line.strip():
                    continue
                idx, _, name = line.strip().partition(" ")
                if not (idx.isascii() and idx.isdigit() and int(idx) < MAX_KEYWORDS) or not _goodKeyword(name):
                    bad += 1
                    continue
                if names[int(idx)] is not None or name.lower() in byLower:
                    bad += 1  # a letter or a name twice: the first one wins
                    continue
                names[int(idx)] = name
                byLower[name.lower()] = int(idx)
        self.names = names
        self.byLower = {n.lower(): i for i, n in enumerate(names) if n}
        self.badLines = bad
        return True

    def flagsFromInfo(self, info: str) -> frozenset:
        letters = info.partition(",")[0]
        out = []
        for c in letters:
            flag = LETTER_FLAGS.get(c)
            if flag is None and "a" <= c <= "z":
                flag = self.names[ord(c) - 97]
            elif c == PASSED and "$forwarded" in self.byLower:
                flag = self.names[self.byLower["$forwarded"]]  # one spelling
            if flag is not None:
                out.append(flag)
        return frozenset(out)

    def infoFor(self, flags, oldInfo="", create=True):
        """
        The info (``"FS"``, ``"Sa,extra"``) for ``flags``, keeping letters we
        do not understand and Dovecot's ``,extra`` fields from ``oldInfo``.
        Returns ``(info, changedKeywordsFile)``; keywords beyond 26 are
        dropped, as Maildir cannot store them ($Forwarded falls back to
        ``P``, which Dovecot does not show).  Keyword letters of ``oldInfo``
        are this folder's: a caller moving a name between folders passes
        ``oldInfo`` without them (:func:`withoutKeywords`).
        """
        letters = set()
        changed = False
        forwarded = False
        for flag in flags:
            lower = flag.lower()
            if lower == "$forwarded":
                forwarded = True
            letter = FLAG_LETTERS.get(lower)
            if letter is None:
                if flag[0] == "\\":
                    continue
                idx = self.byLower.get(lower)
                if idx is None:
                    if not create:
                        continue
                    try:
                        idx = self.names.index(None)
                    except ValueError:
                        continue
                    self.names[idx] = flag
                    self.byLower[lower] = idx
                    changed = True
                letter = chr(97 + idx)
            letters.add(letter)
        oldLetters, comma, extra = oldInfo.partition(",")
        for c in oldLetters:
            known = c in LETTER_FLAGS or ("a" <= c <= "z" and self.names[ord(c) - 97])
            if not known:
                letters.add(c)
        if forwarded and (PASSED in oldLetters or FORWARDED.lower() not in self.byLower):
            letters.add(PASSED)
        info = "".join(sorted(letters))
        if comma:
            info += "," + extra
        return info, changed

    def write(self):
        """Atomically replace the file; caller holds the uidlist lock."""
        text = "".join(f"{i} {n}\n" for i, n in enumerate(self.names) if n)
        tmp = self.path + f".tmp.{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                writeAll(fd, text.encode(ENCODING, ERRORS))
                os.fdatasync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except BaseException:
            # A full disk, say: the letters given out since the last write
            # must not stay (the next write would think them saved, and a
            # restart would give them to other keywords).  Back to the file.
            _unlinkQuietly(tmp)
            self._stamp = None
            try:
                self.refresh()
            except (OSError, CorruptFile):
                self.names = [None] * MAX_KEYWORDS
                self.byLower = {}
            raise
        st = os.stat(self.path)
        self._stamp = (st.st_ino, st.st_size, st.st_mtime_ns)


# File names


def withoutKeywords(info: str) -> str:
    """``info`` without keyword letters (``a``..``z``), which mean nothing
    outside the folder whose ``dovecot-keywords`` gave them."""
    letters, comma, extra = info.partition(",")
    return "".join(c for c in letters if not "a" <= c <= "z") + comma + extra


def splitName(name: str):
    """``"base:2,FS"`` -> ``("base", "FS")``; no info -> ``(name, "")``."""
    base, sep, info = name.partition(":")
    if sep and info.startswith("2,"):
        return base, info[2:]
    return base, ""


def sizesFromBase(base: str):
    """``(S, W)`` from ``,S=<size>,W=<vsize>`` fields of a base name (or None)."""
    s = w = None
    if "," in base:
        for field in base.split(",")[1:]:
            if field.startswith("S="):
                try:
                    s = int(field[2:])
                except ValueError:
                    pass
            elif field.startswith("W="):
                try:
                    w = int(field[2:])
                except ValueError:
                    pass
    return s, w


def extValue(ext, key):
    for token in ext:
        if token[:1] == key:
            try:
                return int(token[1:])
            except ValueError:
                return None
    return None


def canonicalSize(path) -> tuple[int, int]:
    """``(physical size, CRLF size)`` of a file, reading it once."""
    size = vsize = 0
    prevCR = False
    # Never through a symlink, never blocking on a fifo; only regular files.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            size += len(chunk)
            lf = chunk.count(b"\n")
            crlf = chunk.count(b"\r\n")
            if prevCR and chunk[:1] == b"\n":
                crlf += 1
            vsize += len(chunk) + (lf - crlf)
            prevCR = chunk[-1:] == b"\r"
    return size, vsize
