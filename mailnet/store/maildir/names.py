"""Message file names (``<base>:2,<info>``, Dovecot style) and sizes."""

from __future__ import annotations

import base64
import errno
import hashlib
import itertools
import os
import socket
import stat
import time


def _hostPart():
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072")


_HOST = _hostPart()
_counter = itertools.count(1)


def newBase(now=None):
    """A unique Dovecot-style base name: ``<sec>.M<usec>P<pid>Q<n>.<host>``."""
    now = time.time() if now is None else now
    sec = int(now)
    return f"{sec}.M{int((now - sec) * 1e6)}P{os.getpid()}Q{next(_counter)}.{_HOST}"


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
    """The number in the ``<key><n>`` field of uidlist extension fields (or None)."""
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


def messageGuid(base: str, ext=()):
    """
    Dovecot's GUID of a Maildir message: the ``G<guid>`` field of its
    uidlist record when there is one, else its base file name (what
    Dovecot's ``maildir_get_guid`` answers).  A flag rename or a move
    between new/ and cur/ keeps the base, so the GUID too.
    """
    for token in ext:
        if token[:1] == "G" and len(token) > 1:
            return token[1:]
    return base


def emailIdOf(guid: str) -> str:
    """
    The email id of a message with Dovecot GUID ``guid``: ``M`` and the
    URL-safe base64 of a 96-bit BLAKE2b hash (17 characters of JMAP's Id
    alphabet, RFC 8620 s1.2).  A pure function of the GUID, so an index
    rebuilt from the files gives the same ids.
    """
    digest = hashlib.blake2b(guid.encode("utf-8", "surrogateescape"), digest_size=12).digest()
    return "M" + base64.urlsafe_b64encode(digest).decode("ascii")
