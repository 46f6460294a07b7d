"""
The outbound spool: one item per message, plain files, never pickled.

Layout under ``<data_dir>/queue``::

    tmp/            data being received (removed if never committed)
    <id>.msg        the message, exactly as it will be sent (CRLF)
    <id>.json       the envelope: sender, DSN parameters, per-recipient status

An item exists once its ``.json`` exists.  Commit order: the data file is
written in tmp/ and fsynced, the envelope is written and fsynced, both are
renamed into place (data first), then the directory is fsynced.  A crash
at any point leaves either no item or a whole one (plus, at worst, a file
in tmp/ or a ``.msg`` without its ``.json``, which :meth:`Spool.cleanup`
removes).

Who writes what: a new item is written once, by whoever calls
:meth:`Spool.newMessage` (the SMTP server; the queue itself for DSNs).
After that only the holder of the spool lock (``lock``, an ``flock``)
changes an envelope: the running server's queue, or the ``mailnet queue``
command when no server runs (it talks to the server's control socket
otherwise).  Every change replaces the whole ``.json`` atomically
(:func:`~mailnet.durable.writeAtomically`: tmp, fsync, rename, fsync dir), so
a reader always sees a complete envelope.  The files are mode 0600: they
hold people's mail.

The envelope is a :class:`~mailnet.queue.envelope.Envelope`, read by
:func:`~mailnet.queue.envelope.parse` (which checks every field; the id is
the file's name) and written by its ``serialize``.  An item that cannot be
loaded is moved to ``corrupt/`` (:meth:`Spool.setAside`).

Envelope fields (JSON, UTF-8, indented for people)::

    {"version": 1, "id": ..., "sender": "a@b" or "" (null reverse-path),
     "envid": str|null, "ret": "FULL"|"HDRS"|null, "smtputf8": bool,
     "body": "7BIT"|"8BITMIME"|"BINARYMIME", "arrival": epoch seconds,
     "client": "helo [ip]", "auth": username|null, "held": false,
     "delay_warned": false, "size": bytes,
     "recipients": [{"address": ..., "orcpt": "rfc822;..."|null,
                     "notify": ["SUCCESS","FAILURE","DELAY"]|["NEVER"]|null,
                     "status": "pending"|"sent"|"failed"|"delayed",
                     "attempts": 0, "last_error": null, "next_attempt": epoch}]}

The queue adds, per recipient, as it works: ``last_attempt`` (epoch),
``remote_mta`` (the host whose reply ``last_error`` is, or null when the
error was found here), ``action`` once final (``delivered``, ``relayed``,
``expanded``, ``failed``: the RFC 3464 Action), ``reported`` (a DSN about
the final status was queued, or none is due) and, for an alias that
expanded to other addresses, ``expanded_to``.  ``pending`` is a recipient
not tried yet, ``delayed`` one that failed temporarily and waits for
``next_attempt``; both are still to be delivered.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import time

from twisted.internet import threads

from mailnet.durable import fsyncDirectory, writeAtomically
from mailnet.queue.envelope import MAX_FILE, Envelope, EnvelopeError, RecipientState, parse, validId

MAX_REASON = 4096

__all__ = ["Spool", "SpoolLock", "SpoolWriter", "newQueueId", "validId", "matchOwner", "EnvelopeError", "problem",
           "LeaseLost", "QueueStorage", "TempWriter", "newEnvelope"]


class LeaseLost(Exception):
    """
    A shared queue's item is no longer this node's (another node took it
    over after our lease ran out): raised by ``save``/``remove`` of
    :class:`~mailnet.queue.pgspool.PostgresSpool`; the runner drops the item.
    """


def newQueueId() -> str:
    """Sortable by time, unique: ``<hex seconds><hex micro><random>``."""
    now = time.time()
    return f"{int(now):x}{int(now % 1 * 1e6):05x}{secrets.token_hex(4)}"


def newEnvelope(sender, recipients, *, envid=None, ret=None, smtputf8=False, body="7BIT", client=None, auth=None,
                arrival=None, id=None) -> Envelope:
    """The envelope of a new item: the arguments of :meth:`Spool.newMessage`."""
    now = time.time() if arrival is None else arrival
    return Envelope(
        id=id or newQueueId(), sender=sender, envid=envid, ret=ret, smtputf8=bool(smtputf8), body=body,
        arrival=now, client=client, auth=auth,
        recipients=[
            RecipientState(address=r["address"], orcpt=r.get("orcpt"), notify=r.get("notify"), next_attempt=now)
            for r in recipients
        ],
    )


class TempWriter:
    """
    What every queue's writer shares (:class:`SpoolWriter`,
    :class:`~mailnet.queue.pgspool.PostgresWriter`): the message goes to a
    new file ``spool.tmpDir/<id>`` (opened with ``fileFlags`` and
    ``fileMode``), ``abort`` closes and removes it; a subclass commits.
    """

    fileFlags = os.O_WRONLY
    fileMode = "wb"

    def __init__(self, spool, envelope: Envelope):
        self.spool = spool
        self.envelope = envelope
        self.id = envelope.id
        self.tmpPath = os.path.join(spool.tmpDir, self.id)
        self._file = os.fdopen(os.open(self.tmpPath, self.fileFlags | os.O_CREAT | os.O_EXCL, 0o600), self.fileMode)
        self.size = 0

    def write(self, data: bytes):
        self._file.write(data)
        self.size += len(data)

    def abort(self):
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmpPath)


class QueueStorage:
    """
    What both queue storages share (:class:`Spool`,
    :class:`~mailnet.queue.pgspool.PostgresSpool`): the new-item listeners,
    and the message files ``<path>/<id>.msg``.
    """

    def addListener(self, callback):
        """``callback(queueId)`` is called after each new item is durable."""
        self._listeners.append(callback)

    def removeListener(self, callback):
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _added(self, queueId):
        for callback in list(self._listeners):
            callback(queueId)
        return queueId

    def dataPath(self, queueId) -> str:
        return os.path.join(self.path, queueId + ".msg")

    def removeItem(self, queueId, runInThread):
        """
        Deferred: ``remove(queueId)`` run with ``runInThread`` (how the
        runner removes a finished item).  The shared queue overrides it to
        commit the removals of one moment together.
        """
        return runInThread(self.remove, queueId)

    def hasData(self, queueId) -> bool:
        """Whether the item's message file is there."""
        return os.path.exists(self.dataPath(queueId))

    def openData(self, queueId):
        """The message, as a binary file object (the caller closes it)."""
        return open(self.dataPath(queueId), "rb")

    @staticmethod
    def encode(envelope: Envelope) -> bytes:
        """The envelope as the bytes of its file (indented JSON, UTF-8)."""
        return envelope.serialize()


class SpoolWriter(TempWriter):
    """One message being written into the spool; see :meth:`Spool.newMessage`."""

    def _commit(self):
        f = self._file
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self.envelope.size = self.size
        base = os.path.join(self.spool.path, self.id)
        os.replace(self.tmpPath, base + ".msg")
        writeAtomically(base + ".json", self.envelope.serialize(), mode=0o600)
        fsyncDirectory(self.spool.path)
        return self.id

    def commit(self):
        """
        Make the item durable.

        @return: Deferred firing with the queue id once the item is on disk.
        """
        d = self.spool.runInThread(self._commit)
        d.addCallback(self.spool._added)
        return d


class Spool(QueueStorage):
    """
    The spool directory.  The SMTP server writes new items through
    :meth:`newMessage`; the queue scheduler registers with
    :meth:`addListener` to hear of them.
    """

    def __init__(self, path, runInThread=None):
        self.path = path
        # How blocking file work leaves the reactor thread; tests driving
        # the queue with task.Clock pass a synchronous one.
        self.runInThread = runInThread or threads.deferToThread
        self.tmpDir = os.path.join(path, "tmp")
        os.makedirs(self.tmpDir, mode=0o700, exist_ok=True)
        self.lockPath = os.path.join(path, "lock")
        self.corruptDir = os.path.join(path, "corrupt")
        self._listeners = []

    def newMessage(self, sender, recipients, *, envid=None, ret=None, smtputf8=False,
                   body="7BIT", client=None, auth=None, arrival=None, id=None):
        """
        Start a new item.

        @param sender: the reverse-path ("" for the null sender).
        @param recipients: list of dicts with ``address`` and optionally
            ``orcpt`` and ``notify`` (RFC 3461 parameters, as received).
        @param id: the queue id (a :func:`newQueueId` the caller made: SMTP
            gives its message id, so one id names the message in every log
            line); a new one by default.
        @return: a :class:`SpoolWriter`; ``write`` the message (with trace
            headers), then ``commit`` or ``abort``.
        """
        return SpoolWriter(self, newEnvelope(sender, recipients, envid=envid, ret=ret, smtputf8=smtputf8, body=body,
                                             client=client, auth=auth, arrival=arrival, id=id))

    # The queue storage interface (this class, and mailnet/queue/pgspool.py's
    # PostgresSpool for the queue shared by several nodes): newMessage,
    # addListener/removeListener, ids, exists, load, hasData, openData,
    # encode, save, remove, setAside, corruptItems, removeCorrupt, cleanup,
    # lockPath; and attach/detach/release, which a spool directory (one
    # node, every item its own) does not need.
    shared = False

    def attach(self, runner):
        """The runner started (a shared queue starts claiming work for it here)."""

    def detach(self):
        """The runner stops."""

    def release(self):
        """At a clean stop: let other nodes have our items (nothing to do here)."""
        return None

    def lost(self, queueId):
        """The runner dropped an item another node took over (never here)."""

    def ids(self):
        """Ids of the complete items, oldest first."""
        return sorted(name[:-5] for name in os.listdir(self.path) if name.endswith(".json") and validId(name[:-5]))

    def exists(self, queueId) -> bool:
        return validId(queueId) and os.path.exists(self.envelopePath(queueId))

    def load(self, queueId) -> Envelope:
        """
        Read and check an envelope (see :func:`mailnet.queue.envelope.parse`).

        @raise FileNotFoundError: no such item.
        @raise EnvelopeError: the file is not a valid envelope, or the
            item's message file is missing (the reason says which).
        @raise OSError: the file cannot be read (permissions, I/O error).
        """
        if not validId(queueId):
            raise FileNotFoundError(queueId)
        # Not through a symlink, and never blocking on a FIFO someone left here.
        fd = os.open(self.envelopePath(queueId), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise EnvelopeError("the envelope is not a regular file")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(MAX_FILE + 1)
        finally:
            os.close(fd)
        envelope = parse(data, queueId)
        if not os.path.exists(self.dataPath(queueId)):
            raise EnvelopeError("the message file (.msg) is missing")
        return envelope

    # -- Items that cannot be used -------------------------------------------
    #
    # An envelope that fails to load is moved, with its message, to
    # corrupt/ and the reason is written beside it (<id>.reason), so that
    # one bad file never stops the queue and the operator can look at it:
    # ``mailnet queue list`` shows these items, and moving both files back
    # into the spool (then ``mailnet queue flush``) retries one.

    def setAside(self, queueId, reason: str):
        """
        Move an item that cannot be used to corrupt/ (only the holder of the
        spool lock calls this).  Best effort: returns False if the files
        could not be moved.
        """
        if not validId(queueId):
            return False
        os.makedirs(self.corruptDir, mode=0o700, exist_ok=True)
        moved = False
        for suffix in (".json", ".msg"):
            try:
                os.replace(os.path.join(self.path, queueId + suffix), os.path.join(self.corruptDir, queueId + suffix))
                moved = True
            except FileNotFoundError:
                pass
            except OSError:
                return False
        with contextlib.suppress(OSError):
            writeAtomically(os.path.join(self.corruptDir, queueId + ".reason"),
                            (" ".join(reason.split()) + "\n").encode("utf-8"), mode=0o600)
        with contextlib.suppress(OSError):
            fsyncDirectory(self.path)
        return moved

    def corruptItems(self) -> list:
        """``[(id, reason)]`` of the items in corrupt/, by id."""
        try:
            names = os.listdir(self.corruptDir)
        except OSError:
            return []
        ids = sorted({n.rsplit(".", 1)[0] for n in names if n.endswith((".json", ".msg", ".reason"))})
        out = []
        for queueId in ids:
            if not validId(queueId):
                continue
            try:
                with open(os.path.join(self.corruptDir, queueId + ".reason"), "rb") as f:
                    reason = f.read(MAX_REASON).decode("utf-8", "replace").strip()
            except OSError:
                reason = "set aside (no reason recorded)"
            out.append((queueId, reason or "set aside"))
        return out

    def removeCorrupt(self, queueId) -> bool:
        """Delete an item from corrupt/; False if there is none."""
        if not validId(queueId):
            return False
        found = False
        for suffix in (".json", ".msg", ".reason"):
            try:
                os.unlink(os.path.join(self.corruptDir, queueId + suffix))
                found = True
            except FileNotFoundError:
                pass
        if found:
            fsyncDirectory(self.corruptDir)
        return found

    def envelopePath(self, queueId) -> str:
        return os.path.join(self.path, queueId + ".json")

    def save(self, envelope: Envelope, data: bytes | None = None):
        """
        Replace an item's envelope atomically and durably.  Synchronous (call
        it in a thread from the reactor, passing ``data`` made by
        :meth:`encode` in the reactor thread so that the thread never reads
        an envelope being changed).  Only the holder of the spool lock may
        call it (see the module docstring).
        """
        if data is None:
            data = envelope.serialize()
        path = self.envelopePath(envelope.id)
        writeAtomically(path, data, mode=0o600)
        matchOwner(path, self.path)

    def remove(self, queueId):
        """
        Delete an item: the envelope first (so the item is gone at once),
        then the data, then the directory entry is made durable.  Only the
        holder of the spool lock may call it.
        """
        for path in (self.envelopePath(queueId), self.dataPath(queueId)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        fsyncDirectory(self.path)

    def cleanup(self, olderThan=3600.0, now=None):
        """
        Remove what a crash left behind: files in tmp/ and ``.msg`` files
        without an envelope, older than ``olderThan`` seconds (younger ones
        may be messages being received right now).  Returns the paths removed.
        """
        now = time.time() if now is None else now
        removed = []
        candidates = [os.path.join(self.tmpDir, n) for n in os.listdir(self.tmpDir)]
        for name in os.listdir(self.path):
            if name.endswith(".msg") and not os.path.exists(os.path.join(self.path, name[:-4] + ".json")):
                candidates.append(os.path.join(self.path, name))
            elif name.startswith(".tmp-"):
                candidates.append(os.path.join(self.path, name))
        for path in candidates:
            try:
                if now - os.stat(path).st_mtime >= olderThan:
                    os.unlink(path)
                    removed.append(path)
            except FileNotFoundError:
                pass
        return removed


def problem(error) -> str:
    """One line for the operator about why :meth:`Spool.load` failed (no path)."""
    if isinstance(error, EnvelopeError):
        return str(error)
    if isinstance(error, OSError):
        if error.errno == errno.ELOOP:
            return "the envelope is a symbolic link"
        return f"cannot read the envelope: {error.strerror or type(error).__name__}"
    return f"cannot read the envelope: {type(error).__name__}"


def matchOwner(path, like):
    """
    Give ``path`` the owner of ``like`` when we run as root: ``mailnet
    queue`` run by root must not leave files the server's user cannot open.
    """
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(like)
        if st.st_uid != 0 or st.st_gid != 0:
            os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass


class SpoolLock:
    """
    The right to change envelopes (an exclusive ``flock`` on the spool's
    ``lock`` file).  Held by the running server for its whole life, and
    briefly by ``mailnet queue`` when no server runs.  The kernel releases
    it when the holder dies, even by kill -9.
    """

    def __init__(self, path, runInThread=None):
        self.path = path
        # How blocking file work leaves the reactor thread; tests driving
        # the queue with task.Clock pass a synchronous one.
        self.runInThread = runInThread or threads.deferToThread
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking=False) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        matchOwner(self.path, os.path.dirname(self.path) or ".")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        # Note who holds it, for people and error messages.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def holder(self) -> str | None:
        """The pid written by the current holder (may be stale), for messages."""
        try:
            with open(self.path) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def __enter__(self):
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc):
        self.release()
