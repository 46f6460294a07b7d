"""
The outbound queue shared by every node, in PostgreSQL (``[queue] backend =
"postgres"``, or ``auto`` with ``[store] backend = "postgres"``): the same
storage interface as :class:`~mailnet.queue.spool.Spool`, so one scheduler
(:class:`~mailnet.queue.scheduler.QueueRunner`) runs over either.

Tables (schema version 5, mailnet/store/postgres/schema.py):

* ``queue_items``: one row per item: ``envelope`` (the JSON of
  :class:`~mailnet.queue.envelope.Envelope`, per-recipient state included,
  read back through the same validating ``parse``), ``next_try`` (the
  earliest due recipient; NULL while held), ``owner`` (the node process
  delivering it) and ``lease_until`` (database clock, epoch seconds),
  ``corrupt`` (set aside: why).
* ``queue_chunks``: the message in chunks of :data:`CHUNK` bytes, written
  and read one chunk at a time (never the whole body in memory).
* ``queue_commands``: operator commands (``flush``, ``hold``, ``release``,
  ``delete``) for the node holding an item.

Who holds what:

* A new item (SMTP, a DSN, a vacation reply) is inserted in one committed
  transaction, owned by the node that accepted it, with a lease; only then
  is the client answered 250.  The node keeps its local copy of the message
  (``<data_dir>/queue/pg/<id>.msg``) and delivers it.
* Every ``claim_interval`` seconds each node claims items that are due and
  not held by a live lease (left by a dead node, or never claimed) with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` (two nodes never claim the same
  row), at most ``claim_batch`` at a time, copies the messages into local
  files (:data:`FETCH_ITEMS` at a time: messages of one chunk many per
  query, longer ones chunk by chunk) and hands each slice to its scheduler
  as soon as it is copied.
* A finished item's removal is its record; the runner asks for it with
  :meth:`PostgresSpool.removeItem`, and the removals asked while one
  transaction of removals commits go together in the next (group commit,
  each row fenced on its own).  A crash before that commit sends the
  message again (docs/queue.md says how long that window is).
* A node renews the leases of the items it holds every third of ``lease``.
  Every write of an item (an outcome, a removal) is fenced: ``WHERE owner
  = me``; a row another node took over is dropped from memory at once
  (:class:`~mailnet.queue.spool.LeaseLost`), and so is every item when
  renewing failed for most of a lease (the database unreachable).
* Per recipient, ``sent`` is written before anything else may happen to the
  item, so a recipient recorded as sent is never sent again by any node.
  What remains at-least-once: the remote's 250 and our commit of it (a
  node dying in between, or a lease lost in between) means that recipient
  is sent again by the node that takes the item over; see docs/queue.md.

Nothing here blocks the reactor: database work runs in the
:class:`~mailnet.store.postgres.db.Database`'s thread pool.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time

from twisted.internet import defer

from mailnet.logs import Logger
from mailnet.queue.envelope import Envelope, EnvelopeError, parse, validId
from mailnet.queue.spool import LeaseLost, QueueStorage, TempWriter, newEnvelope
from mailnet.store.interfaces import TemporaryStoreError

log = Logger()

CHUNK = 256 * 1024
ACTIVE = ("pending", "delayed")
NOW = "extract(epoch FROM clock_timestamp())"
REMOVE_BATCH = 500  # removals committed in one transaction at most
FETCH_ITEMS = 100  # claimed items copied in one trip to a thread, then handed to the runner
FETCH_BYTES = 8 * 1024 * 1024  # bodies copied in one query at most (claimed items of one chunk)


def deleteItems(conn, ids, node):
    """Delete the rows of ``ids`` this node owns (chunks and commands cascade); the ids deleted."""
    return [r[0] for r in conn.execute("DELETE FROM queue_items WHERE id = ANY(%s) AND owner = %s RETURNING id",
                                       (ids, node))]


def nextTry(envelope: Envelope):
    """The ``next_try`` column: NULL while held, the earliest due active recipient, else 0 (finish it)."""
    if envelope.held:
        return None
    times = [r.next_attempt or 0 for r in envelope.recipients if r.status in ACTIVE]
    return min(times) if times else 0.0


def insertItem(conn, envelope: Envelope, data: bytes, f, owner, lease):
    """One new row and its chunks, read from ``f`` one chunk at a time."""
    chunks = -(-envelope.size // CHUNK)
    conn.execute(f"INSERT INTO queue_items (id, envelope, size, chunks, next_try, owner, lease_until) "
                 f"VALUES (%s, %s, %s, %s, %s, %s, {NOW} + %s)",
                 (envelope.id, data, envelope.size, chunks, nextTry(envelope), owner, lease))
    f.seek(0)
    with conn.cursor() as cur:
        for n in range(chunks):
            cur.execute("INSERT INTO queue_chunks (id, n, data) VALUES (%s, %s, %s)", (envelope.id, n, f.read(CHUNK)))


class PostgresWriter(TempWriter):
    """One message being written into the shared queue; see :meth:`PostgresSpool.newMessage`."""

    # read back in chunks by insertItem
    fileFlags = os.O_RDWR
    fileMode = "w+b"

    def _commit(self):
        f = self._file
        f.flush()
        self.envelope.size = self.size
        data = self.envelope.serialize()
        try:
            self.spool.db.call(insertItem, self.envelope, data, f, self.spool.node, self.spool.lease)
        finally:
            f.close()
        os.replace(self.tmpPath, self.spool.dataPath(self.id))
        return data

    def commit(self):
        """Deferred firing with the queue id once the row is committed (then the 250)."""
        d = self.spool.runInThread(self._commit)

        def committed(data):
            self.spool._held[self.id] = data
            return self.spool._added(self.id)

        def failed(f):
            self.abort()
            return f

        return d.addCallbacks(committed, failed)


class PostgresSpool(QueueStorage):
    """
    The queue's storage in PostgreSQL (see the module docstring).

    @param db: a :class:`~mailnet.store.postgres.db.Database`.
    @param path: a local directory: the copies of the messages this node
        holds, and the node's lock file.
    """

    def __init__(self, db, path, reactor=None, lease=120.0, claimInterval=5.0, batch=200, node=None,
                 runInThread=None):
        if reactor is None:
            from twisted.internet import reactor
        self.db = db
        self.reactor = reactor
        self.lease = float(lease)
        self.claimInterval = float(claimInterval)
        self.batch = int(batch)
        self.node = node or f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
        self.runInThread = runInThread or (lambda f, *a: db.runner(f, *a))
        self.root = path
        self.path = os.path.join(path, "pg")
        self.tmpDir = os.path.join(self.path, "tmp")
        os.makedirs(self.tmpDir, mode=0o700, exist_ok=True)
        self.lockPath = os.path.join(path, "lock")
        self._listeners = []
        self._held = {}  # id -> envelope bytes as claimed or written: the items this node delivers
        self._unsaved = set()  # ids whose last write failed (database away): written again
        self._unremoved = set()  # ids done whose removal failed: removed again
        self._toRemove = []  # (id, Deferred): removals waiting for the next group commit
        self._removing = False  # a transaction of removals is in flight
        self._runner = None
        self._loop = None
        self._busy = False
        self._claimedFull = False  # the last claim got a whole batch: more may be waiting
        self._lastRenew = None
        self._renewedAt = time.monotonic()
        self.shared = True

    # -- The storage interface of Spool ---------------------------------------

    def newMessage(self, sender, recipients, *, envid=None, ret=None, smtputf8=False,
                   body="7BIT", client=None, auth=None, arrival=None, id=None):
        return PostgresWriter(self, newEnvelope(sender, recipients, envid=envid, ret=ret, smtputf8=smtputf8,
                                                body=body, client=client, auth=auth, arrival=arrival, id=id))

    def ids(self):
        """The items this node holds, oldest first."""
        return sorted(self._held)

    def exists(self, queueId) -> bool:
        return queueId in self._held

    def load(self, queueId) -> Envelope:
        data = self._held.get(queueId)
        if data is None:
            raise FileNotFoundError(queueId)
        envelope = parse(data, queueId)
        if not self.hasData(queueId):
            raise EnvelopeError("the node's copy of the message is missing")
        return envelope

    def save(self, envelope: Envelope, data: bytes | None = None):
        """Write the envelope (in a thread), fenced by ownership: :class:`LeaseLost` if another node has it."""
        if data is None:
            data = envelope.serialize()

        def txn(conn):
            cur = conn.execute(f"UPDATE queue_items SET envelope = %s, size = %s, next_try = %s, "
                               f"lease_until = {NOW} + %s WHERE id = %s AND owner = %s",
                               (data, envelope.size, nextTry(envelope), self.lease, envelope.id, self.node))
            return cur.rowcount

        try:
            n = self.db.call(txn)
        except TemporaryStoreError:
            self._unsaved.add(envelope.id)  # written again from the runner once the database is back
            raise
        self._unsaved.discard(envelope.id)
        if not n:
            raise LeaseLost(envelope.id)
        if envelope.id in self._held:
            self._held[envelope.id] = data  # what load() gives: the state last written

    def remove(self, queueId):
        """Delete the item (its chunks and commands go with it), fenced like :meth:`save`; blocking."""
        outcome = self._removeMany([queueId])[queueId]
        if outcome is not None:
            raise outcome

    def removeItem(self, queueId, runInThread=None):
        """
        Deferred: :meth:`remove` without blocking, the way the runner
        removes a finished item.  Removals asked while one transaction of
        removals is being committed wait for it and then go together in the
        next one (group commit, at most :data:`REMOVE_BATCH`): a node
        relaying at full speed commits many removals at a time instead of
        one each, and at most one such transaction is in flight.  Each
        Deferred fires once its own removal is committed, or fails as
        :meth:`remove` raises (:class:`LeaseLost`, ``TemporaryStoreError``).
        """
        d = defer.Deferred()
        self._toRemove.append((queueId, d))
        if not self._removing:
            self._removeNext()
        return d

    def _removeNext(self):
        batch, self._toRemove = self._toRemove[:REMOVE_BATCH], self._toRemove[REMOVE_BATCH:]
        self._removing = True

        def done(outcomes):
            for queueId, d in batch:
                outcome = outcomes[queueId] if isinstance(outcomes, dict) else outcomes
                if outcome is None:
                    d.callback(None)
                else:
                    d.errback(outcome)

        def again(_):
            self._removing = False
            if self._toRemove:
                self._removeNext()
            self._claimSoon()

        self.runInThread(self._removeMany, [queueId for queueId, _ in batch]).addBoth(done).addBoth(again)

    def _removeMany(self, ids):
        """
        One transaction deleting the rows of ``ids`` this node owns (in a
        thread); ``{id: None (removed) or the exception to raise}``.
        """
        try:
            gone = set(self.db.call(deleteItems, ids, self.node))
        except TemporaryStoreError as e:
            # Kept (their leases renewed) and removed once the database is
            # back: dropping them would let another node send them again.
            self._unremoved.update(ids)
            return {queueId: TemporaryStoreError(str(e)) for queueId in ids}
        outcomes = {}
        for queueId in ids:
            self._unremoved.discard(queueId)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dataPath(queueId))
            self._held.pop(queueId, None)
            outcomes[queueId] = None if queueId in gone else LeaseLost(queueId)
        return outcomes

    def setAside(self, queueId, reason: str):
        """Mark the row corrupt (in the background) and let it go; shown by ``mailnet queue list``."""
        if not validId(queueId):
            return False
        self._held.pop(queueId, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dataPath(queueId))
        d = self.db.run(lambda conn: conn.execute(
            "UPDATE queue_items SET corrupt = %s, owner = NULL WHERE id = %s AND owner = %s",
            (" ".join(reason.split())[:4096], queueId, self.node)))
        d.addErrback(lambda f: log.failure("queue {id}: cannot mark the item corrupt", f, id=queueId))
        return True

    def corruptItems(self):
        return []  # in the table: `mailnet queue list` reads it (mailnet/queue/pgadmin.py)

    def removeCorrupt(self, queueId):
        return False

    def cleanup(self, olderThan=60.0, now=None):
        """
        Remove local copies of messages this node does not hold (a previous
        run's: its items are claimed again, copied again) and unfinished
        writes, older than ``olderThan`` seconds.  Returns nothing to log.
        """
        now = time.time() if now is None else now
        for directory in (self.tmpDir, self.path):
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                if directory == self.path and (not name.endswith(".msg") or name[:-4] in self._held):
                    continue
                with contextlib.suppress(OSError):
                    if os.path.isfile(path) and now - os.stat(path).st_mtime >= olderThan:
                        os.unlink(path)
        return []

    # -- Sharing: claims, leases, commands --------------------------------------

    def attach(self, runner):
        """The runner started: claim work now and every ``claim_interval`` seconds."""
        self._runner = runner
        self._lastRenew = time.monotonic()
        self._renewedAt = time.monotonic()
        self._tick()

    def detach(self):
        self._runner = None
        if self._loop is not None and self._loop.active():
            self._loop.cancel()
        self._loop = None

    def release(self):
        """At a clean stop: let the others take what we hold at once (no lease to wait for)."""
        held = list(self._held)
        if not held:
            return defer.succeed(None)
        done = sorted(self._unremoved)

        def txn(conn):
            # Items done whose removal failed earlier go now; never released to be sent again.
            conn.execute("DELETE FROM queue_items WHERE owner = %s AND id = ANY(%s)", (self.node, done))
            conn.execute("UPDATE queue_items SET owner = NULL, lease_until = NULL WHERE owner = %s AND id = ANY(%s)",
                         (self.node, held))

        d = self.db.run(txn)

        def released(_):
            self._unremoved.clear()
            self._unsaved.clear()
            for queueId in held:
                self._held.pop(queueId, None)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.dataPath(queueId))

        d.addCallback(released)
        d.addErrback(lambda f: log.warn("queue: could not release the items held at stop ({e}); "
                                        "others take them over after the lease", e=f.getErrorMessage()))
        return d

    def _tick(self):
        self._loop = None
        if self._runner is None:
            return
        if self._busy:
            self._schedule()
            return
        self._busy = True
        d = defer.maybeDeferred(self._work)
        d.addErrback(lambda f: log.failure("queue: claiming work from the database failed", f))

        def done(_):
            self._busy = False
            self._schedule()

        d.addBoth(done)

    def _claimSoon(self):
        """
        After a claim that got a whole batch, look again as soon as this
        node holds less than half a batch (it delivered what it took),
        instead of waiting for ``claim_interval``: a backlog left by a dead
        node drains at the nodes' delivery rate, each node taking a batch at
        a time.
        """
        if (self._claimedFull and self._runner is not None and not self._busy
                and len(self._held) < self.batch / 2 and self._loop is not None and self._loop.active()):
            self._claimedFull = False
            self._loop.cancel()
            self._tick()

    def _schedule(self):
        if self._runner is not None and (self._loop is None or not self._loop.active()):
            self._loop = self.reactor.callLater(self.claimInterval, self._tick)

    @defer.inlineCallbacks
    def _work(self):
        now = time.monotonic()
        if now - self._lastRenew >= self.lease / 3:
            yield self._renew()
        if self._runner is None:
            return
        yield self._retry()
        try:
            commands = yield self.db.run(takeCommands, self.node)
        except TemporaryStoreError:
            return
        for seq, queueId, command in commands:
            yield self._apply(queueId, command)
        if self._runner is None or self._runner.stopping:
            return
        try:
            rows = yield self.db.run(claim, self.node, self.lease, self.batch, self.claimInterval)
        except TemporaryStoreError:
            return
        self._claimedFull = len(rows) >= self.batch
        # The messages copied FETCH_ITEMS at a time in one trip to a pool
        # thread (small ones many per query), each slice handed to the
        # runner as soon as it is copied: delivery starts before the whole
        # claim is copied.
        for start in range(0, len(rows), FETCH_ITEMS):
            part = rows[start:start + FETCH_ITEMS]
            copied = yield self.runInThread(self._fetchAll, [(r[0], r[3], r[4]) for r in part])
            for queueId, data, previous, _, _ in part:
                if queueId not in copied:
                    continue
                if previous:
                    log.info("queue {id}: taken over from node {node} (its lease ran out)", id=queueId, node=previous)
                self._held[queueId] = bytes(data)
                if self._runner is not None:
                    self._runner.claimed(queueId)

    def _fetchAll(self, items):
        """
        Copy the messages of ``items`` (``(id, chunks, size)``) into their
        local files; the set of ids copied (the others are left for their
        lease to run out).  Messages of one chunk come many per query (at
        most :data:`FETCH_BYTES` at a time); longer ones one chunk per query.
        """
        copied = set()
        group, groupBytes = [], 0
        for queueId, chunks, size in items:
            if chunks > 1:
                if self._copy(queueId, self._fetch, queueId, chunks):
                    copied.add(queueId)
                continue
            if group and groupBytes + size > FETCH_BYTES:
                copied |= self._fetchGroup(group)
                group, groupBytes = [], 0
            group.append((queueId, chunks))
            groupBytes += size
        if group:
            copied |= self._fetchGroup(group)
        return copied

    def _copy(self, queueId, f, *args):
        try:
            f(*args)
        except Exception as e:
            log.warn("queue {id}: cannot copy the message from the database ({e}); left for later",
                     id=queueId, e=type(e).__name__)
            return False
        return True

    def _fetchGroup(self, group):
        """Messages of at most one chunk, in one query; the set of ids copied."""
        ids = [queueId for queueId, chunks in group if chunks]
        try:
            rows = dict(self.db.call(lambda conn: conn.execute(
                "SELECT id, data FROM queue_chunks WHERE n = 0 AND id = ANY(%s)", (ids,)).fetchall())) if ids else {}
        except Exception as e:
            log.warn("queue: cannot copy {n} message(s) from the database ({e}); left for later",
                     n=len(group), e=type(e).__name__)
            return set()
        copied = set()
        for queueId, chunks in group:
            data = rows.get(queueId, b"" if not chunks else None)
            if data is None:
                log.warn("queue {id}: the message is missing in the database; left for later", id=queueId)
                continue
            if self._copy(queueId, self._write, queueId, [data]):
                copied.add(queueId)
        return copied

    def _write(self, queueId, parts):
        tmp = os.path.join(self.tmpDir, queueId + ".fetch")
        with open(tmp, "wb") as out:
            for part in parts:
                out.write(part)
        os.replace(tmp, self.dataPath(queueId))

    def _fetch(self, queueId, chunks):
        """Copy a long message into its local file, one chunk per query (never whole in memory)."""

        def parts():
            for n in range(chunks):
                row = self.db.call(lambda conn: conn.execute(
                    "SELECT data FROM queue_chunks WHERE id = %s AND n = %s", (queueId, n)).fetchone())
                if row is None:
                    raise EnvelopeError(f"chunk {n} of the message is missing")
                yield row[0]

        self._write(queueId, parts())

    @defer.inlineCallbacks
    def _retry(self):
        """Writes that failed while the database was away, done again (removals here, saves by the runner)."""
        for queueId in sorted(self._unremoved):
            try:
                yield self.runInThread(self.remove, queueId)
            except LeaseLost:
                pass
            except TemporaryStoreError:
                return
        for queueId in sorted(self._unsaved):
            item = self._runner.items.get(queueId) if self._runner is not None else None
            if item is None or queueId not in self._held:
                self._unsaved.discard(queueId)
                continue
            item.dirty = True
            yield self._runner.save(item)

    @defer.inlineCallbacks
    def _renew(self):
        held = list(self._held)
        try:
            kept = yield self.db.run(lambda conn: [r[0] for r in conn.execute(
                f"UPDATE queue_items SET lease_until = {NOW} + %s WHERE owner = %s AND id = ANY(%s) RETURNING id",
                (self.lease, self.node, held))])
        except TemporaryStoreError:
            if time.monotonic() - self._renewedAt > self.lease * 0.75:
                log.error("queue: the leases could not be renewed for most of {lease}s; dropping the {n} "
                          "item(s) held (another node may take them over)", lease=self.lease, n=len(self._held))
                for queueId in list(self._held):
                    self._lose(queueId)
            return
        self._lastRenew = self._renewedAt = time.monotonic()
        for queueId in set(held) - set(kept):
            if queueId in self._held:
                log.warn("queue {id}: no longer ours (another node took it over); dropped", id=queueId)
                self._lose(queueId)

    def _lose(self, queueId):
        self._held.pop(queueId, None)
        self._unsaved.discard(queueId)
        self._unremoved.discard(queueId)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dataPath(queueId))
        if self._runner is not None:
            self._runner.lost(queueId)

    def lost(self, queueId):
        """The runner found out (a fenced write): forget the item here too."""
        self._held.pop(queueId, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dataPath(queueId))

    @defer.inlineCallbacks
    def _apply(self, queueId, command):
        from mailnet.queue.admin import QueueAdmin

        runner = self._runner
        if runner is None or queueId not in runner.items:
            return
        admin = QueueAdmin(runner)
        try:
            if command == "flush":
                admin.flush(queueId)
            elif command in ("hold", "release", "delete"):
                yield getattr(admin, command)(queueId)
        except Exception as e:
            log.warn("queue {id}: operator command {command} failed: {e}", id=queueId, command=command, e=e)


def takeCommands(conn, node):
    """The operator commands for items this node holds, in order (taken: deleted)."""
    return sorted(conn.execute(
        "DELETE FROM queue_commands c USING queue_items q WHERE c.id = q.id AND q.owner = %s "
        "RETURNING c.seq, c.id, c.command", (node,)).fetchall())


def claim(conn, node, lease, batch, ahead):
    """
    Claim up to ``batch`` items due within ``ahead`` seconds whose lease is
    gone (or that nobody held): ``FOR UPDATE SKIP LOCKED``, so that nodes
    claiming at once each get other rows.
    ``[(id, envelope, previous owner, chunks, size)]``.
    """
    return conn.execute(
        f"UPDATE queue_items q SET owner = %s, lease_until = {NOW} + %s "
        f"FROM (SELECT id, owner FROM queue_items WHERE corrupt IS NULL AND next_try IS NOT NULL "
        f"      AND next_try <= {NOW} + %s AND (owner IS NULL OR lease_until < {NOW}) "
        f"      ORDER BY next_try LIMIT %s FOR UPDATE SKIP LOCKED) c "
        f"WHERE q.id = c.id RETURNING q.id, q.envelope, c.owner, q.chunks, q.size",
        (node, lease, ahead, batch)).fetchall()


def openQueue(config, reactor=None):
    """The ``postgres`` queue of ``config`` (the wiring's factory); refuses a schema without the queue tables."""
    from mailnet.store.postgres.db import openChecked

    db = openChecked(config, reactor=reactor)
    with contextlib.suppress(OSError):
        left = [n for n in os.listdir(config.spoolDir) if n.endswith(".json")]
        if left:
            # A node moved from the spool directory to the shared queue: those are not imported.
            log.warn("queue: {n} item(s) left in the spool directory are not delivered by the shared queue; "
                     "run this node once with [queue] backend = \"spool\" until `mailnet queue list` is empty",
                     n=len(left))
    q = config.queue
    return PostgresSpool(db, config.spoolDir, reactor=reactor, lease=q.lease, claimInterval=q.claim_interval,
                         batch=q.claim_batch, node=f"{config.server.hostname}/{os.getpid()}/{secrets.token_hex(3)}")
