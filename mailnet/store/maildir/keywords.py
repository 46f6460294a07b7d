"""``dovecot-keywords`` and the flag letters of message file names."""

from __future__ import annotations

import os

from mailnet.durable import writeAll
from mailnet.store.interfaces import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN
from mailnet.store.maildir.files import (
    ENCODING,
    ERRORS,
    CorruptFile,
    readFrom,
    unlinkQuietly,
)

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
                _, data = readFrom(self.path, 0)
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
            unlinkQuietly(tmp)
            self._stamp = None
            try:
                self.refresh()
            except (OSError, CorruptFile):
                self.names = [None] * MAX_KEYWORDS
                self.byLower = {}
            raise
        st = os.stat(self.path)
        self._stamp = (st.st_ino, st.st_size, st.st_mtime_ns)


def withoutKeywords(info: str) -> str:
    """
    ``info`` without keyword letters (``a``..``z``), which mean nothing
    outside the folder whose ``dovecot-keywords`` gave them.
    """
    letters, comma, extra = info.partition(",")
    return "".join(c for c in letters if not "a" <= c <= "z") + comma + extra
