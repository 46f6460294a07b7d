"""
The sweep of bodies nobody refers to any more: ``mailnet db gc
[--dry-run] [--grace SECONDS]`` from any node, and every ``[postgres]
gc_interval`` seconds on one node at a time (a session-level advisory
lock, :data:`SWEEP_LOCK`: a second sweep, on any node, skips its turn).
Blocking code: the CLI runs it on its own thread, a node in a worker
thread of the database's pool.

Two kinds of garbage:

* **Body rows with no message** (both ``bodies`` modes).  Expunges, folder
  deletes and MOVEs drop a body in the transaction that removes its last
  message (sql.dropBodies), so these only come from outside that path (an
  account's rows deleted by hand cascade to its messages, not to the
  bodies).  They go the way dropBodies does it: locked, then deleted if
  still unreferenced, so a delivery that reuses one meanwhile keeps it.
  Their ``body_chunks`` go with them (ON DELETE CASCADE): chunks without
  a row cannot exist, so there is no chunk sweep of its own.
* **Objects with no row** (``bodies = "s3"``): an object outlives its row
  (the row goes with the last message; deleting the object there could
  race a new delivery of the same bytes), and a PUT whose transaction then
  failed leaves one too.  Such an object is deleted when its
  ``LastModified`` is older than the grace period (``[postgres] gc_grace``,
  one day by default).

Why this cannot delete an object a committed message needs:

1. A delivery takes ``pg_advisory_xact_lock_shared(OBJECT_LOCK, key)`` for
   its body before it looks for the row and PUTs the object
   (sql.storeBody), and holds it until its transaction ends.  The sweep
   takes the same lock exclusively, then checks again that there is no row,
   then deletes, then commits.  So either the delivery went first (the
   sweep waits for its commit and then sees its row: kept), or the sweep
   went first (the delivery waits, finds no row, and PUTs the object anew
   after the delete).
2. The grace period covers what the lock cannot see: an upload whose
   transaction has not committed is invisible to the sweep's row check
   (the object is there, its row is not yet), and a writer that does not
   take the lock (a node still running older code during an upgrade)
   would lose its object.  Such an upload is seconds old, its
   ``LastModified`` is the time of its PUT, and the transaction around it
   ends within ``statement_timeout`` of its last query; an object younger
   than ``gc_grace`` is never a candidate, so only objects whose row has
   been gone (or never came) for longer than any upload-to-commit window
   are.  It also absorbs clock skew between the object store and the
   node.  (An object orphaned long ago and PUT again by an old-code node at
   the very moment of the sweep is the one case neither covers: run the
   sweep once every node runs this version.)
"""

from __future__ import annotations

import dataclasses
import time

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()

# pg_try_advisory_lock(SWEEP_LOCK): one sweep at a time across every node.
SWEEP_LOCK = 7239004
# pg_advisory_xact_lock[_shared](OBJECT_LOCK, key of a body hash): a
# delivery storing a body (shared) against the sweep deleting its object.
OBJECT_LOCK = 7239005
# Object deletes per transaction (each holds that many advisory locks).
BATCH = 100
ROWS_BATCH = 1000


def objectKey(h):
    """The second half of a body's advisory lock: its hash's first 4 bytes (collisions only wait)."""
    return int.from_bytes(bytes(h)[:4], "big", signed=True)


def shareObject(conn, h):
    """(sql.storeBody, bodies in S3.)  Hold the body's lock against a sweep until this transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", (OBJECT_LOCK, objectKey(h)))


@dataclasses.dataclass
class Report:
    """What one sweep found and did (``removed``: would remove, in a dry run)."""

    dryRun: bool = False
    rows: int = 0  # body rows without a message, removed
    rowChunks: int = 0
    rowBytes: int = 0
    objects: int = 0  # objects listed under s3_prefix
    orphans: int = 0  # ... of which with no row
    young: int = 0  # ... of those, younger than the grace period: kept
    removed: int = 0  # ... removed
    removedBytes: int = 0
    kept: int = 0  # candidates that had a row again when locked
    grace: float = 0.0

    def lines(self):
        verb = "would remove" if self.dryRun else "removed"
        out = [f"bodies: {self.rows} row(s) without a message {verb} "
               f"({self.rowChunks} chunk(s), {self.rowBytes} bytes)"]
        if self.objects or self.orphans or self.removed:
            out.append(f"objects: {self.objects} listed, {self.orphans} without a row: {self.removed} {verb} "
                       f"({self.removedBytes} bytes), {self.young} younger than the grace period "
                       f"({self.grace:g} s) kept" + (f", {self.kept} in use again kept" if self.kept else ""))
        return out


def sweep(db, objects, grace, dryRun=False, now=time.time):
    """
    One sweep (blocking).  ``db``: a :class:`~mailnet.store.postgres.db.Database`
    (its ``call`` on this thread's connection); ``objects``: its object
    store or None.  Returns a :class:`Report`, or None when another sweep
    holds :data:`SWEEP_LOCK`.
    """
    if not db.call(lambda conn: conn.execute("SELECT pg_try_advisory_lock(%s)", (SWEEP_LOCK,)).fetchone()[0]):
        return None
    try:
        report = Report(dryRun=dryRun, grace=grace)
        _sweepRows(db, report, dryRun)
        if objects is not None:
            _sweepObjects(db, objects, report, grace, dryRun, now)
        return report
    finally:
        try:
            db.call(lambda conn: conn.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK,)))
        except Exception:
            db._drop()  # the lock goes with the connection


def _sweepRows(db, report, dryRun):
    last = b""
    while True:
        found = db.call(lambda conn: conn.execute(
            "SELECT b.hash, b.size, b.chunks FROM bodies b WHERE b.hash > %s AND NOT EXISTS "
            "(SELECT 1 FROM messages m WHERE m.body_hash = b.hash) ORDER BY b.hash LIMIT %s",
            (last, ROWS_BATCH)).fetchall())
        if not found:
            return
        last = bytes(found[-1][0])
        if dryRun:
            gone = found
        else:
            gone = db.call(_dropRows, [r[0] for r in found])
        report.rows += len(gone)
        report.rowBytes += sum(r[1] for r in gone)
        report.rowChunks += sum(r[2] for r in gone)


def _dropRows(conn, hashes):
    # As sql.dropBodies: lock first, then look again in a new statement.
    locked = [r[0] for r in conn.execute("SELECT hash FROM bodies WHERE hash = ANY(%s) ORDER BY hash FOR UPDATE",
                                         (hashes,))]
    if not locked:
        return []
    return conn.execute("DELETE FROM bodies b WHERE b.hash = ANY(%s) AND NOT EXISTS "
                        "(SELECT 1 FROM messages m WHERE m.body_hash = b.hash) RETURNING hash, size, chunks",
                        (locked,)).fetchall()


def _sweepObjects(db, objects, report, grace, dryRun, now):
    cutoff = now() - grace
    for page in objects.listing():
        report.objects += len(page)
        hashes = [h for h, _, _ in page]
        present = {bytes(r[0]) for r in db.call(lambda conn: conn.execute(
            "SELECT hash FROM bodies WHERE hash = ANY(%s)", (hashes,)).fetchall())}
        old = []
        for h, modified, size in page:
            if h in present:
                continue
            report.orphans += 1
            if modified > cutoff:
                report.young += 1
            else:
                old.append((h, size))
        for start in range(0, len(old), BATCH):
            batch = old[start:start + BATCH]
            if dryRun:
                removed = batch
            else:
                removed = db.call(_deleteObjects, objects, batch)
            report.removed += len(removed)
            report.removedBytes += sum(size for _, size in removed)
            report.kept += len(batch) - len(removed)


def _deleteObjects(conn, objects, batch):
    """Under each body's exclusive lock, delete the objects that still have no row."""
    for key in sorted({objectKey(h) for h, _ in batch}):
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (OBJECT_LOCK, key))
    present = {bytes(r[0]) for r in conn.execute("SELECT hash FROM bodies WHERE hash = ANY(%s)",
                                                 ([h for h, _ in batch],))}
    removed = [(h, size) for h, size in batch if h not in present]
    for h, _ in removed:
        objects.delete(h)
    return removed


class Sweeper:
    """
    ``[postgres] gc_interval``: a sweep every ``interval`` seconds (the
    first one an interval after the start), in the database's pool; the
    node holding :data:`SWEEP_LOCK` does it, the others skip their turn.
    One log line per sweep with the counts.
    """

    def __init__(self, db, objects, interval, grace, reactor):
        self.db, self.objects = db, objects
        self.interval, self.grace = interval, grace
        self.reactor = reactor
        self._timer = None
        self.running = None
        self._stopped = False

    def start(self):
        self._stopped = False
        if self.interval > 0 and self._timer is None:
            self._timer = self.reactor.callLater(self.interval, self._tick)

    def stop(self):
        # A sweep running now still ends, but does not start the timer again.
        self._stopped = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _tick(self):
        self._timer = None
        self.running = d = self.db.runner(sweep, self.db, self.objects, self.grace)
        d.addCallbacks(self._done, self._failed)
        d.addBoth(lambda _: None if self._stopped else self.start())

    def _done(self, report):
        if report is None:
            log.info("gc: another node is sweeping; skipped")
            return
        for line in report.lines():
            log.info("gc: {line}", line=line)

    def _failed(self, failure):
        log.warn("gc: the sweep failed ({why}); next one in {interval:g} s",
                 why=failure.getErrorMessage(), interval=self.interval)


def runOnce(db, objects, grace):
    """Deferred: one sweep in the pool (tests, embedding)."""
    return defer.maybeDeferred(db.runner, sweep, db, objects, grace)
