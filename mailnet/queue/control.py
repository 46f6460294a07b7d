"""
How ``mailnet queue`` and the running server agree on who changes the
queue.

The rule: only the holder of the spool lock (:class:`SpoolLock`) writes
envelopes.  The running server takes the lock at start and keeps it; it
serves a UNIX control socket, ``<data_dir>/run/queue.sock`` (mode 0600),
through which the command asks it to list, show, flush, delete, hold or
release items.  The server applies the change to its own in-memory state
and writes the envelope itself, so a change can never be overwritten by a
delivery that was running at the same moment.

When no server runs, the socket does not answer and the command takes the
lock itself (:class:`DirectAdmin`) and edits the files; a server starting
meanwhile waits for the lock.  When the lock is held but the socket does
not answer (a server still starting, or one that is stuck), the command
retries for a few seconds and then says so.

The protocol: one JSON object per line each way.  Request
``{"command": "list"|"show"|"flush"|"delete"|"hold"|"release", "id": ...}``;
answer ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.

A damaged spool never makes a command fail as a whole: ``list`` gives each
item that cannot be used as ``{"id": ..., "corrupt": reason}`` among the
envelopes (the server has moved such items to the spool's ``corrupt/``
directory; without a server they are reported where they are), ``flush``
returns one error line per bad item beside its count, and ``show``, ``hold``
or ``release`` of a bad item fail with the reason.  ``delete`` removes a
set-aside item too.
"""

from __future__ import annotations

import json
import os
import socket
import time

from twisted.internet import defer
from twisted.protocols.basic import LineOnlyReceiver
from twisted.internet.protocol import Factory

from mailnet.logs import Logger
from mailnet.queue.admin import QueueAdmin
from mailnet.queue.envelope import EnvelopeError
from mailnet.queue.spool import Spool, SpoolLock, problem, validId

log = Logger()

COMMANDS = ("list", "show", "flush", "delete", "hold", "release")
NEEDS_ID = ("show", "delete", "hold", "release")
HEADER_LIMIT = 64 * 1024


class AdminError(Exception):
    """An operator command failed (no such item...); ``str`` is the message."""


def socketPath(config) -> str:
    return os.path.join(config.runDir, "queue.sock")


def readHeader(spool: Spool, queueId) -> str:
    """The header section of an item's message (for ``show``)."""
    try:
        with spool.openData(queueId) as f:
            data = f.read(HEADER_LIMIT)
    except OSError:
        return ""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        data = data[: end + 2]
    return data.decode("utf-8", "replace").replace("\r\n", "\n")


# -- In the server --------------------------------------------------------


class ControlProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 65536

    def lineReceived(self, line):
        try:
            request = json.loads(line)
            command = request.get("command")
            queueId = request.get("id")
        except (ValueError, AttributeError):
            self._answer({"ok": False, "error": "not a JSON request"})
            return
        d = defer.maybeDeferred(self.factory.handle, command, queueId)
        d.addCallback(lambda result: {"ok": True, "result": result})
        d.addErrback(self._failed)
        d.addCallback(self._answer)

    def _failed(self, failure):
        if failure.check(AdminError, KeyError):
            message = failure.value.args[0] if failure.value.args else str(failure.value)
            return {"ok": False, "error": str(message)}
        log.failure("queue control command failed", failure)
        return {"ok": False, "error": f"internal error: {failure.value}"}

    def _answer(self, answer):
        if self.transport is not None:
            self.transport.write(json.dumps(answer, ensure_ascii=False).encode("utf-8") + b"\n")

    def lineLengthExceeded(self, line):
        self.transport.loseConnection()


class ControlFactory(Factory):
    """Serves the control socket for a running :class:`QueueRunner`."""

    protocol = ControlProtocol
    noisy = False

    def __init__(self, runner, extra=None):
        self.admin = QueueAdmin(runner)
        self.extra = extra or {}  # command -> f() -> result or Deferred (no id): the server's other jobs

    @defer.inlineCallbacks
    def handle(self, command, queueId):
        admin = self.admin
        if command in self.extra:
            result = yield self.extra[command]()
            return result
        if command not in COMMANDS:
            raise AdminError(f"unknown command {command!r}")
        if command in NEEDS_ID and not queueId:
            raise AdminError(f"{command}: which item?")
        if queueId is not None and not validId(queueId):
            raise AdminError(f"no queue item {queueId}")
        admin.rescan()  # items another program put in the spool count too
        corrupt = dict(admin.corrupt())
        if command == "list":
            return [e.toDict() for e in admin.list()] + [{"id": i, "corrupt": r} for i, r in corrupt.items()]
        if queueId in corrupt and not admin.isLoaded(queueId):
            if command == "delete":
                admin.spool.removeCorrupt(queueId)
                log.info("queue {id}: set-aside item deleted by the operator", id=queueId)
                return {"server": True}
            raise AdminError(f"{queueId} is corrupt and set aside: {corrupt[queueId]}")
        item = admin.get(queueId) if queueId else None
        if command == "show":
            return {"envelope": item.envelope.toDict(), "header": readHeader(admin.spool, queueId), "server": True}
        if command == "flush":
            count = admin.flush(queueId)
            return {"recipients": count, "server": True}
        if command == "delete":
            yield admin.delete(queueId)
        elif command == "hold":
            yield admin.hold(queueId)
        elif command == "release":
            yield admin.release(queueId)
        return {"server": True}


# -- In the command ---------------------------------------------------------


class DirectAdmin:
    """
    The same commands, on the files, for when no server runs.  Each call
    takes the spool lock for its duration.
    """

    def __init__(self, spool: Spool, lock: SpoolLock):
        self.spool = spool
        self.lock = lock

    def handle(self, command, queueId=None):
        if command not in COMMANDS:
            raise AdminError(f"unknown command {command!r}")
        if command in NEEDS_ID and not queueId:
            raise AdminError(f"{command}: which item?")
        corrupt = dict(self.spool.corruptItems())
        if queueId is not None and not self.spool.exists(queueId):
            if queueId in corrupt:
                if command == "delete":
                    self.spool.removeCorrupt(queueId)
                    return {"server": False}
                raise AdminError(f"{queueId} is corrupt and set aside: {corrupt[queueId]}")
            raise AdminError(f"no queue item {queueId}")
        if command == "list":
            out = []
            for qid in self.spool.ids():
                try:
                    out.append(self.spool.load(qid).toDict())
                except FileNotFoundError:
                    continue
                except (EnvelopeError, OSError) as e:
                    # Left where it is: the server sets it aside when it starts.
                    out.append({"id": qid, "corrupt": problem(e)})
            return out + [{"id": i, "corrupt": r} for i, r in corrupt.items()]
        if command == "delete":
            self.spool.remove(queueId)
            return {"server": False}
        if command == "flush":
            now = time.time()
            count = 0
            errors = []
            for qid in [queueId] if queueId else self.spool.ids():
                try:
                    envelope = self.spool.load(qid)
                except FileNotFoundError:
                    continue
                except (EnvelopeError, OSError) as e:
                    if queueId:
                        raise AdminError(f"{qid} is corrupt: {problem(e)}") from None
                    errors.append(f"{qid} is corrupt: {problem(e)}")
                    continue
                if envelope.held:
                    continue
                changed = False
                for r in envelope.recipients:
                    if r.status in ("pending", "delayed"):
                        r.next_attempt = now
                        count += 1
                        changed = True
                if changed:
                    self.spool.save(envelope)
            return {"recipients": count, "server": False, "errors": errors}
        envelope = self._load(queueId)
        if command == "show":
            return {"envelope": envelope.toDict(), "header": readHeader(self.spool, queueId), "server": False}
        envelope.held = command == "hold"
        self.spool.save(envelope)
        return {"server": False}

    def _load(self, queueId):
        try:
            return self.spool.load(queueId)
        except FileNotFoundError:
            raise AdminError(f"no queue item {queueId}") from None
        except (EnvelopeError, OSError) as e:
            raise AdminError(f"{queueId} is corrupt: {problem(e)}") from None


def ask(path, command, queueId=None, timeout=30.0):
    """
    Send one request over the control socket.

    @return: the answer dict.
    @raise ConnectionError: nobody listens (or the socket file is stale).
    """
    if len(path.encode()) >= 108:
        raise ConnectionError(f"control socket path too long: {path}")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ConnectionError(str(e)) from e
        s.sendall(json.dumps({"command": command, "id": queueId}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the control connection")
            data += chunk
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise AdminError("the server's answer on the control socket is not valid")
        return answer
    finally:
        s.close()


def run(config, command, queueId=None, wait=5.0):
    """
    Do an operator command: through the running server when there is one,
    else on the files under the lock.

    @return: the result.
    @raise AdminError: the command failed, or the server holds the lock but
        does not answer.
    """
    if config.queueBackend == "postgres":
        # The queue shared by the nodes: on the database, from any node.
        from mailnet.queue import pgadmin

        return pgadmin.run(config, command, queueId)
    spool = Spool(config.spoolDir)
    path = socketPath(config)
    deadline = time.monotonic() + wait
    while True:
        try:
            answer = ask(path, command, queueId)
        except ConnectionError:
            lock = SpoolLock(spool.lockPath)
            if lock.acquire(blocking=False):
                try:
                    return DirectAdmin(spool, lock).handle(command, queueId)
                finally:
                    lock.release()
            if time.monotonic() >= deadline:
                holder = lock.holder()
                raise AdminError(
                    f"the queue is locked by another process (pid {holder or '?'}) whose control socket "
                    f"{path} does not answer; is the server still starting?")
            time.sleep(0.1)
            continue
        except socket.timeout:
            raise AdminError(f"the server did not answer on {path}")
        if not answer.get("ok"):
            raise AdminError(answer.get("error") or "failed")
        return answer.get("result")
