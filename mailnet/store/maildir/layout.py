"""
Where a folder lives inside an account, what a new folder holds, and the
account's ``subscriptions`` file (Dovecot's format).
"""

from __future__ import annotations

import os

from mailnet.durable import fsyncDir, writeAll
from mailnet.mail.codecs import decodeMutf7, encodeMutf7
from mailnet.store.base import newUidValidity, normalizeFolderName
from mailnet.store.interfaces import INBOX, InvalidFolderName, StoreError
from mailnet.store.maildir import dotlock
from mailnet.store.maildir.files import UidList
from mailnet.store.maildir.modlog import ModLog

TMP_DIR = ".tmp"
SUBSCRIPTIONS = "subscriptions"
DELETED_PREFIX = "..mailnet-deleted."
NEW_PREFIX = "..mailnet-new."


def folderDirName(name: str) -> str:
    """
    The directory of a (normalized) folder inside the account:
    ``""`` for INBOX, ``".Archive.2024"`` for ``Archive/2024``, components
    in modified UTF-7.  A ``.`` in a component cannot be stored.
    """
    if name == INBOX:
        return ""
    parts = name.split("/")
    encoded = []
    for part in parts:
        if "." in part:
            raise InvalidFolderName(f"{name!r}: '.' is the Maildir++ separator")
        encoded.append(encodeMutf7(part))
    dirname = "." + ".".join(encoded)
    if len(dirname.encode("utf-8")) > 250:
        raise InvalidFolderName(f"{name!r}: too long")
    return dirname


def folderNameOf(dirname: str):
    """The folder name of a ``.X.Y`` directory, or None if it is not one."""
    if not dirname.startswith(".") or dirname.startswith(".."):
        return None
    parts = dirname[1:].split(".")
    try:
        decoded = [decodeMutf7(p) for p in parts]
    except ValueError:
        return None
    if decoded and decoded[0].upper() == INBOX:
        if len(decoded) == 1:
            return None
        decoded[0] = INBOX
    name = "/".join(decoded)
    try:
        return normalizeFolderName(name)
    except StoreError:
        return None


def writeFile(path, data: bytes, mode=0o600):
    """Create (or truncate) ``path`` with ``data``, fdatasync'd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        writeAll(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def makeFolderFiles(path, isInbox, uidValidity=None):
    """cur/ new/ tmp/ (+ maildirfolder), an empty uidlist and sidecar."""
    for sub in ("cur", "new", "tmp"):
        os.mkdir(os.path.join(path, sub), 0o700)
    if not isInbox:
        writeFile(os.path.join(path, "maildirfolder"), b"")
    uv = uidValidity or newUidValidity()
    uidlist = UidList(path)
    uidlist.uidValidity = uv
    data, _ = uidlist.render([], 1)
    writeFile(uidlist.path, data)
    ModLog(path).create(path, uv, 1, 0)
    for sub in ("cur", "new", "tmp"):
        fsyncDir(os.path.join(path, sub))
    fsyncDir(path)


def readSubscriptions(accountPath):
    """Names from a Dovecot ``subscriptions`` file (version 1 or 2)."""
    try:
        with open(os.path.join(accountPath, SUBSCRIPTIONS), "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return []
    names = []
    version2 = text.startswith("V\t2\n\n")
    if version2:
        text = text[5:]
    for line in text.split("\n"):
        if not line:
            continue
        if version2:
            parts = [_tabUnescape(p) for p in line.split("\t")]
        elif "/" in line:
            parts = line.split("/")
        else:
            parts = line.split(".")
        try:
            decoded = [decodeMutf7(p) for p in parts]
        except ValueError:
            decoded = parts
        try:
            names.append(normalizeFolderName("/".join(decoded)))
        except StoreError:
            continue
    return names


def _tabEscape(s):
    return s.replace("\x01", "\x011").replace("\t", "\x01t").replace("\r", "\x01r").replace("\n", "\x01n")


def _tabUnescape(s):
    if "\x01" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\x01" and i + 1 < len(s):
            out.append({"1": "\x01", "t": "\t", "r": "\r", "n": "\n", "0": "\x00"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def renderSubscriptions(names):
    """The ``subscriptions`` file (version 2) for ``names``."""
    lines = ["V\t2\n\n"]
    for name in names:
        lines.append("\t".join(_tabEscape(encodeMutf7(p)) for p in name.split("/")) + "\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def writeSubscriptions(accountPath, names):
    """Replace the file the Dovecot way: dotlock, write into it, rename."""
    path = os.path.join(accountPath, SUBSCRIPTIONS)
    lock = dotlock.acquire(path, timeout=120, stale=30)
    try:
        lock.writeAndReplace(renderSubscriptions(names))
    finally:
        lock.release()
    fsyncDir(accountPath)
