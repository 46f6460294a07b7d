"""
The toolkit a store backend composes: the rules every backend must apply
the same way, and the folder-handle machinery the built-in backends share.
Public and stable for third-party backends (see ``docs/extending.md``);
protocol code never imports it (protocols see only
:mod:`mailnet.store.interfaces`).

Names and flags:

* :func:`normalizeFolderName` checks a folder name and returns its canonical
  spelling (``inbox/x`` -> ``INBOX/x``); :func:`checkNewFolderName` adds the
  rules for names being created; :func:`parentsOf` lists the parents.
* :class:`FolderLimits` (the ``[limits]`` table) and :func:`checkFolderCount`.
* :func:`normalizeFlags` canonicalises flag strings; :func:`applyFlags`
  does a ``setFlags`` mode, :func:`flagChanges` a whole ``setFlags`` call.
* :func:`newUidValidity`; :func:`parseUsername` (``local@domain`` as two
  safe path components).
* :func:`moveInboxMessages`: the second half of renaming INBOX.

Open folders:

* :class:`SharedIndex` is the base of the one-per-folder index object that
  all :class:`FolderHandle` s on a folder share; it owns the handle list and
  tells every listener of every handle about changes.
* :class:`FolderHandle` is the :class:`~mailnet.store.interfaces.IFolder`
  a backend hands out; it checks and normalises arguments and delegates
  everything to its index.
"""

from __future__ import annotations

import dataclasses
import time

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from mailnet.store.interfaces import (
    INBOX,
    SYSTEM_FLAGS,
    FolderLimitExceeded,
    IFolder,
    InvalidFolderName,
    NoSuchFolder,
    StoreError,
)

log = Logger()

_SYSTEM_BY_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
# Characters that never appear in a folder name: NUL and other C0 controls,
# DEL, and the backslash (a path separator on some systems, and the IMAP
# quoting character).
_BAD_CHARS = frozenset(chr(c) for c in range(0x20)) | {"\x7f", "\\"}


def normalizeFolderName(name) -> str:
    """
    Check a folder name and return its canonical form.

    The first component is folded to ``INBOX`` when it is INBOX in any case.
    Raises :class:`InvalidFolderName` for non-strings, empty names, empty
    components (``a//b``, ``/abs``, ``a/``), ``.`` and ``..`` components, and
    control characters, NUL or ``\\``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidFolderName(repr(name))
    if not _BAD_CHARS.isdisjoint(name):
        raise InvalidFolderName(f"{name!r}: control character or backslash")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidFolderName(f"{name!r}: empty, '.' or '..' component")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return "/".join(parts)


# Never in a new folder name (existing ones are still listed): the IMAP
# wildcards, C1 controls, and the bidirectional-text controls that can make
# a name display as another (the "Trojan Source" trick).
_BAD_NEW_CHARS = (
    frozenset("*%")
    | frozenset(chr(c) for c in range(0x80, 0xA0))
    | frozenset("\u200e\u200f")
    | frozenset(chr(c) for c in range(0x202A, 0x202F))
    | frozenset(chr(c) for c in range(0x2066, 0x206A))
)


@dataclasses.dataclass(frozen=True)
class FolderLimits:
    """The ``[limits]`` a store applies to CREATE and RENAME."""

    folders: int = 1000  # per account, INBOX included
    nameLength: int = 200  # characters
    depth: int = 16  # components: "a/b/c" is 3

    @classmethod
    def fromConfig(cls, config):
        """The limits of a loaded config (its ``[limits]`` table)."""
        limits = config.limits
        return cls(limits.folders, limits.folder_name_length, limits.folder_depth)


def checkNewFolderName(name: str, limits: FolderLimits) -> None:
    """
    The extra rules for a name being created (CREATE, RENAME target):
    :class:`InvalidFolderName` for characters that never belong in a new
    name, :class:`FolderLimitExceeded` past the length or depth limits.
    ``name`` is already normalized.
    """
    bad = sorted(_BAD_NEW_CHARS.intersection(name))
    if bad:
        shown = " ".join(c if c in "*%" else f"U+{ord(c):04X}" for c in bad)
        raise InvalidFolderName(f"a folder name cannot contain {shown}")
    if len(name) > limits.nameLength:
        raise FolderLimitExceeded(f"folder names are limited to {limits.nameLength} characters")
    if name.count("/") + 1 > limits.depth:
        raise FolderLimitExceeded(f"folders nest at most {limits.depth} levels deep")


def checkFolderCount(existing: int, adding: int, limits: FolderLimits) -> None:
    """:class:`FolderLimitExceeded` if ``adding`` more folders pass the limit."""
    if adding and existing + adding > limits.folders:
        raise FolderLimitExceeded(f"at most {limits.folders} folders per account")


def isInbox(name: str) -> bool:
    """``name`` (normalized) is INBOX."""
    return name == INBOX


def parentsOf(name: str):
    """``"a/b/c"`` -> ``["a", "a/b"]``."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def normalizeFlags(flags) -> frozenset:
    """
    Canonical flag set: system flags in their standard spelling, unknown
    backslash flags (``\\Recent``...) dropped, keywords kept as given.
    """
    if isinstance(flags, str):
        flags = (flags,)
    out = set()
    for flag in flags:
        if isinstance(flag, bytes):
            flag = flag.decode("ascii", "replace")
        if not flag:
            continue
        if flag[0] == "\\":
            canonical = _SYSTEM_BY_LOWER.get(flag.lower())
            if canonical is not None:
                out.add(canonical)
        elif all(0x20 < ord(c) < 0x7F and c not in '(){%*"\\]' for c in flag):
            out.add(flag)
    return frozenset(out)


def flagChanges(infos, uids, flags: frozenset, mode: str, unchangedSince=None):
    """
    What ``setFlags(uids, flags, mode, unchangedSince)`` does to a folder
    whose messages are ``infos`` (uid -> MessageInfo): ``(todo, failed)``,
    ``todo`` the ``(info, newFlags)`` of the messages whose flags change,
    ``failed`` the UIDs changed after ``unchangedSince`` (RFC 7162 s3.1.3:
    left alone).  UIDs not in ``infos`` are ignored.
    """
    todo, failed = [], []
    for uid in uids:
        info = infos.get(uid)
        if info is None:
            continue
        if unchangedSince is not None and info.modseq > unchangedSince:
            failed.append(uid)
            continue
        new = applyFlags(info.flags, flags, mode)
        if new != info.flags:
            todo.append((info, new))
    return todo, failed


def applyFlags(old: frozenset, flags: frozenset, mode: str) -> frozenset:
    """The flags after ``setFlags(..., mode)``: ``set``, ``add`` or ``remove``."""
    if mode == "set":
        return flags
    if mode == "add":
        return old | flags
    if mode == "remove":
        return old - flags
    raise ValueError(f"setFlags mode must be set, add or remove, not {mode!r}")


_lastUidValidity = 0


def newUidValidity() -> int:
    """Time-based and strictly increasing within the process."""
    global _lastUidValidity
    value = max(int(time.time()), _lastUidValidity + 1) & 0xFFFFFFFF or 1
    _lastUidValidity = value
    return value


def parseUsername(username: str):
    """
    Split ``local@domain`` into ``(domain, local)`` path components, domain
    lower-cased.  A name without ``@`` gets the domain ``_local`` (an
    underscore cannot appear in a host name).  Raises ValueError for names
    that could not be stored as two safe directory names.
    """
    if not isinstance(username, str) or not username:
        raise ValueError(f"bad username {username!r}")
    local, at, domain = username.rpartition("@")
    if not at:
        local, domain = username, "_local"
    domain = domain.lower()
    for part in (local, domain):
        if (
            not part
            or part in (".", "..")
            or part.startswith(".")
            or "/" in part
            or not _BAD_CHARS.isdisjoint(part)
            or len(part.encode("utf-8")) > 200
        ):
            raise ValueError(f"bad username {username!r}")
    return domain, local


@defer.inlineCallbacks
def moveInboxMessages(account, newName):
    """
    RFC 3501 s6.3.5: renaming INBOX moves its messages to the new folder
    (made already); INBOX stays, empty, and its children are not renamed.
    Deferred firing when the move is durable.
    """
    inbox = yield account.openFolder(INBOX)
    try:
        target = yield account.openFolder(newName)
    except BaseException:
        inbox.close()
        raise
    try:
        uids = [info.uid for info in inbox.messages()]
        if uids:
            yield inbox.moveTo(uids, target)
    finally:
        inbox.close()
        target.close()


class SharedIndex:
    """
    Base of the per-folder index that every open handle shares.

    Subclasses provide the state: ``name``, ``uidValidity``, ``uidNext``,
    ``highestModSeq``, ``deleted`` (the folder was deleted: handles fail
    with :class:`NoSuchFolder`); and what :class:`FolderHandle` delegates
    to, with the arguments already checked: ``messages()``, ``get(uid)``,
    ``expungedSince(modseq)`` (plain values), optionally ``mailboxId``,
    ``emailIds(uids)`` and ``threadIds(uids)`` (a Deferred; see
    :mod:`mailnet.store.threads`) (else the handle has none), optionally
    ``prefetch(uids)`` (a hint, in the caller's order; else nothing is
    done), and ``refresh()``,
    ``openMessage(uid)``, ``append(source, flags, internalDate)``,
    ``setFlags(uids, flags, mode, unchangedSince)``, ``expunge(uids)``,
    ``copyTo(uids, destIndex)``, ``moveTo(uids, destIndex)`` (values or
    Deferreds, as :class:`~mailnet.store.interfaces.IFolder` says; ``uids``
    sorted and unique, ``flags`` normalized, ``destIndex`` an index of the
    same backend).  After a change is durable, call :meth:`notify` with
    ``"messagesAdded"``, ``"flagsChanged"`` or ``"messagesExpunged"``.

    ``firstRecentUid`` (``\\Recent``, see :meth:`claimRecent`) starts at 1
    and lives as long as the index; a backend that keeps it with the
    folder's files sets it when it loads the index and overrides
    :meth:`saveRecent`.
    """

    def __init__(self):
        self.handles = []
        self.firstRecentUid = 1

    def claimRecent(self, uid):
        """
        :meth:`~mailnet.store.interfaces.IFolder.claimRecent`: move
        ``firstRecentUid`` past ``uid``, at once (so one claimant gets each
        message), and have it saved; return the former value.
        """
        first = self.firstRecentUid
        if uid >= first:
            self.firstRecentUid = uid + 1
            self.saveRecent()
        return first

    def saveRecent(self):
        """Keep ``firstRecentUid`` with the folder (in the background); this index keeps it in memory only."""

    def attach(self, handle):
        """A new handle on this folder (called by :class:`FolderHandle`)."""
        self.handles.append(handle)

    def detach(self, handle):
        """Forget a handle; returns True when it was the last one."""
        try:
            self.handles.remove(handle)
        except ValueError:
            pass
        return not self.handles

    def notify(self, method: str, arg):
        """Call ``method(handle, arg)`` on every listener of every handle."""
        if not arg:
            return
        for handle in list(self.handles):
            for listener in list(handle.listeners):
                try:
                    getattr(listener, method)(handle, arg)
                except Exception:
                    log.failure(
                        "store listener {listener!r}.{method} failed",
                        listener=listener,
                        method=method,
                    )


def _closedError():
    return StoreError("folder handle is closed")


@implementer(IFolder)
class FolderHandle:
    """
    The IFolder given to callers.  All state lives in the shared index.

    ``release(index)`` is called when the last handle on the index closes,
    so the backend can drop the index.
    """

    def __init__(self, index, release=None):
        self._index = index
        self._release = release
        self.listeners = []
        self.closed = False
        index.attach(self)

    def __repr__(self):
        return f"<{type(self).__name__} {self._index.name!r}>"

    # Attributes (live views of the shared index).
    @property
    def name(self):
        return self._index.name

    @property
    def uidValidity(self):
        return self._index.uidValidity

    @property
    def uidNext(self):
        return self._index.uidNext

    @property
    def highestModSeq(self):
        return self._index.highestModSeq

    @property
    def mailboxId(self):
        # Optional for an index: None when the backend has no mailbox ids.
        return getattr(self._index, "mailboxId", None)

    @property
    def firstRecentUid(self):
        return self._index.firstRecentUid

    def claimRecent(self, uid):
        return self._index.claimRecent(int(uid))

    def _live(self):
        if self.closed:
            raise _closedError()
        if self._index.deleted:
            raise NoSuchFolder(self._index.name)
        return self._index

    def messages(self):
        return self._index.messages()

    def get(self, uid):
        return self._index.get(uid)

    def refresh(self):
        return defer.maybeDeferred(lambda: self._live().refresh())

    def openMessage(self, uid):
        return defer.maybeDeferred(lambda: self._live().openMessage(uid))

    def prefetch(self, uids):
        # Optional for an index (a hint): nothing when the backend has no use for it.
        prefetch = getattr(self._index, "prefetch", None)
        if prefetch is None or self.closed or self._index.deleted:
            return None
        try:
            prefetch([int(u) for u in uids])
        except Exception:
            log.failure("store prefetch failed")
        return None

    def append(self, source, flags=(), internalDate=None):
        return defer.maybeDeferred(
            lambda: self._live().append(source, normalizeFlags(flags), internalDate)
        )

    def setFlags(self, uids, flags, mode="set", unchangedSince=None):
        if mode not in ("set", "add", "remove"):
            return defer.fail(ValueError(f"bad setFlags mode {mode!r}"))
        return defer.maybeDeferred(
            lambda: self._live().setFlags(
                _uidList(uids), normalizeFlags(flags), mode, unchangedSince
            )
        )

    def expunge(self, uids):
        return defer.maybeDeferred(lambda: self._live().expunge(_uidList(uids)))

    def copyTo(self, uids, destination):
        return defer.maybeDeferred(
            lambda: self._live().copyTo(_uidList(uids), _destIndex(self, destination))
        )

    def moveTo(self, uids, destination):
        return defer.maybeDeferred(
            lambda: self._live().moveTo(_uidList(uids), _destIndex(self, destination))
        )

    def expungedSince(self, modseq):
        return self._index.expungedSince(modseq)

    def emailIds(self, uids):
        # Optional for an index: no ids when the backend has none.
        emailIds = getattr(self._index, "emailIds", None)
        return emailIds(_uidList(uids)) if emailIds is not None else {}

    def threadIds(self, uids):
        # Optional for an index, like emailIds.
        threadIds = getattr(self._index, "threadIds", None)
        if threadIds is None:
            return defer.succeed({})
        return defer.maybeDeferred(threadIds, _uidList(uids))

    def addListener(self, listener):
        if listener not in self.listeners:
            self.listeners.append(listener)

    def removeListener(self, listener):
        try:
            self.listeners.remove(listener)
        except ValueError:
            pass

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.listeners = []
        if self._index.detach(self) and self._release is not None:
            self._release(self._index)


def _uidList(uids):
    """Sorted, de-duplicated list of ints."""
    if isinstance(uids, int):
        uids = (uids,)
    return sorted({int(u) for u in uids})


def _destIndex(source, destination):
    if not isinstance(destination, FolderHandle) or type(destination._index) is not type(
        source._index
    ):
        raise StoreError("destination is not a folder of this store")
    if destination.closed:
        raise _closedError()
    if destination._index.deleted:
        raise NoSuchFolder(destination._index.name)
    return destination._index
