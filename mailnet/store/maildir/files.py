"""
The small files of a Maildir++ folder, read and written the way Dovecot does:
``dovecot-uidlist``, ``dovecot-keywords``, and our own ``mailnet-modseq``
sidecar: the I/O they share and ``dovecot-uidlist``
(:mod:`.modlog` and :mod:`.keywords` hold the other two, with the message
file-name helpers).  No locking here: callers hold the folder's dotlock (see
:mod:`.dotlock`) for every write.

All file names are ``str`` (``os.fsdecode``/surrogateescape), so names that
are not UTF-8 survive a round trip.
"""

from __future__ import annotations

import os
import secrets
import stat

from mailnet.durable import appendDurably

ENCODING = "utf-8"
ERRORS = "surrogateescape"


def isMailboxGuid(guid):
    """Whether ``guid`` is a mailbox GUID as Dovecot writes it (32 hex digits)."""
    return guid is not None and len(guid) == 32 and all(c in "0123456789abcdef" for c in guid)


def unlinkQuietly(path):
    """Remove ``path`` if it can be (cleaning up after a failure)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def openIndex(path):
    """
    A descriptor of the index file ``path`` (None if missing); anything
    but a regular file is :class:`CorruptFile`.
    """
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


def readFrom(path, offset):
    """(stat, bytes from offset) or (None, b"") if missing."""
    fd = openIndex(path)
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


def completeLines(data: bytes):
    """Split off a trailing partial line: (complete part, consumed length)."""
    end = data.rfind(b"\n") + 1
    return data[:end], end


class CorruptFile(Exception):
    """An index file that cannot be parsed (set aside and rebuilt)."""


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


class IndexFile:
    """
    What the append-only index files (:class:`UidList`, and
    :class:`~mailnet.store.maildir.modlog.ModLog`) share: the reader
    position (``ino``, ``offset``) and catching up with appends.  A
    subclass defines ``NAME`` (the file name in the folder), ``reset()``,
    ``readNew()`` and ``readHeaderAndLast()``.
    """

    def __init__(self, folderPath):
        self.path = os.path.join(folderPath, self.NAME)
        self.reset()

    def _appended(self):
        """
        What was appended since the last read: ``(replaced, st, text,
        used)``.  ``st`` is None when there is nothing to parse: the file
        is missing (``replaced`` True; the reader is reset) or unchanged.
        ``replaced``: the file is new to us or was replaced, so ``text`` is
        all of it.  ``used`` counts the bytes of the complete lines.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.reset()
            return True, None, "", 0
        if st.st_ino == self.ino and st.st_size == self.offset:
            return False, None, "", 0
        replaced = st.st_ino != self.ino or st.st_size < self.offset
        if replaced:
            self.reset()
        st, data = readFrom(self.path, self.offset)
        if st is None:
            self.reset()
            return True, None, "", 0
        data, used = completeLines(data)
        return replaced, st, data.decode(ENCODING, ERRORS), used

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


class UidList(IndexFile):
    """
    ``dovecot-uidlist`` (version 3, reads version 1 too)::

        3 V<uidvalidity> N<nextuid> G<guid> [other header fields]
        <uid> [<ext fields>] :<base file name>

    The reader state (inode, offset of the first unread byte, header values,
    highest UID seen) lets callers read only what was appended since.
    """

    NAME = "dovecot-uidlist"

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
        replaced, st, text, used = self._appended()
        if st is None:
            return replaced, []
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

    def readHeaderAndLast(self):
        """
        Cheap read for a writer that needs only the header and the highest
        UID: the first line and the last complete record.  Positions the
        reader at the end, so later :meth:`readNew` calls see only appends.
        """
        fd = openIndex(self.path)
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
            complete, used = completeLines(tail)
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
        if not isMailboxGuid(self.guid):
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
