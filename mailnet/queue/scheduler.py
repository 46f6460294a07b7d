"""
The queue runner: picks the recipients that are due, groups them by
destination, delivers them over a pool of reused connections (or into the
store, for local recipients), records each outcome in the item's envelope
and sends the DSNs.

Life of an item (docs/queue.md has the long version):

1. The SMTP server commits it to the spool; the spool tells us
   (:meth:`QueueRunner.added`), or we find it at start.
2. Each due recipient (``pending`` or ``delayed`` with ``next_attempt`` in
   the past) goes into a :class:`Job`: one per item and destination (a
   remote domain, the smarthost, or local mailboxes), at most
   :data:`MAX_RCPTS` recipients each.
3. A destination has a queue of jobs and up to
   ``max_connections_per_destination`` workers (``max_connections`` in
   total).  A worker opens a session (MX lookup, connect, EHLO, STARTTLS,
   AUTH), then sends jobs one after another over it, up to
   ``messages_per_connection``, and keeps it open for
   :data:`~mailnet.queue.workers.IDLE_SECONDS` in case more mail comes for
   the destination.  A destination opens one connection at a time until a
   session works (a dead destination costs one attempt per round, not one
   per message).
4. Each outcome goes into the envelope: ``sent``, ``failed`` (permanent:
   5xx, no such domain, null MX, lifetime passed) or ``delayed`` with the
   next attempt from :func:`~mailnet.queue.schedule.next_attempt`.  The
   envelope is written (atomic, fsynced) at the end of the item's round, or
   at once when other jobs of the item are still running; an item that is
   done is removed instead, and its removal is the record.
5. When an item's jobs of one round are all done, its DSNs are queued (as
   new spool items, from the null sender): one failure report for the
   recipients that failed, one success report for NOTIFY=SUCCESS, one delay
   warning once after ``[queue] delay_warning``.  An item whose recipients
   are all final and reported is removed.

The runner is split by job: this module holds its life (start, stop,
loading, setting aside) and timing (the heap of due items, dispatch into
jobs) and the item's files; :mod:`~mailnet.queue.workers` runs the jobs,
:mod:`~mailnet.queue.outcomes` records their outcomes,
:mod:`~mailnet.queue.bounces` sends the DSNs at the end of a round;
:class:`~mailnet.queue.admin.QueueAdmin` runs the operator commands on it.

Crash safety: an outcome is recorded after the peer's reply, so a crash
between the reply and the fsync of the envelope means one more delivery
of that recipient after the restart; a recipient recorded ``sent`` is
never sent again.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import random

from twisted.internet import defer, threads

from mailnet.auth import splitAddress
from mailnet.logs import Logger
from mailnet.metrics import DISCARD
from mailnet.queue.bounces import Bounces
from mailnet.queue.envelope import Envelope, EnvelopeError
from mailnet.queue.outcomes import ACTIVE, Outcomes
from mailnet.queue.spool import LeaseLost, Spool, problem
from mailnet.queue.workers import LOCAL, SMARTHOST, Destination, Job, Workers

log = Logger()

MAX_RCPTS = 100  # RFC 5321 s4.5.3.1.8: every server takes at least 100
STOP_GRACE = 10.0  # seconds running transactions get at shutdown


class Item:
    """One queue item in memory: its envelope and what is going on with it."""

    def __init__(self, envelope: Envelope):
        self.envelope = envelope
        self.id = envelope.id
        self.inflight = set()  # indices of recipients being delivered
        self.jobs = 0  # jobs of this item not finished
        self.deleted = False
        self.chain = defer.succeed(None)  # serializes file writes of this item
        self.saveQueued = None  # Deferred of a save queued but not started
        self.finishing = False
        self.finishAgain = False
        self.scheduledAt = None  # time of this item's entry in the runner's heap
        self.dirty = False  # changed in memory, not yet written

    @property
    def recipients(self):
        return self.envelope.recipients

    @property
    def held(self) -> bool:
        return self.envelope.held



class QueueRunner(Workers, Outcomes, Bounces):
    """
    The scheduler.  Everything happens on the reactor thread; file writes go
    through ``runInThread``.

    @param spool: the :class:`~mailnet.queue.spool.Spool` (the caller holds
        its lock).
    @param config: the :class:`~mailnet.config.Config`.
    @param clock: ``IReactorTime`` (a ``task.Clock`` in tests).
    @param connector: opens remote sessions: ``connect(destination)`` ->
        Deferred firing with a session (``deliver(Transaction)`` ->
        Deferred[:class:`~mailnet.queue.clientmachine.Result`], ``quit()``,
        ``abort()``, ``alive``, ``host``, ``closed``) or failing with
        :class:`DeliveryError`.  See :class:`~mailnet.queue.relay.SMTPConnector`.
    @param directory: :class:`~mailnet.auth.Directory` (local domains, aliases).
    @param store: ``IMailStore`` for local recipients.
    @param srs: :class:`~mailnet.mailauth.forwarding.SRSRewriter` or None.
    """

    def __init__(self, spool: Spool, config, clock, connector, directory=None, store=None,
                 hostname=None, rng=None, runInThread=None, metrics=None, srs=None):
        self.spool = spool
        self.srs = srs  # [srs]: SRSRewriter, the MAIL FROM of forwarded mail (workers._transaction); None: off
        self.metrics = metrics if metrics is not None else DISCARD
        self.config = config
        self.clock = clock
        self.connector = connector
        self.directory = directory
        self.store = store
        self.hostname = hostname or config.server.hostname
        self.rng = rng or random.Random()
        self.runInThread = runInThread or threads.deferToThread
        self.items: dict[str, Item] = {}
        self.destinations: dict[str, Destination] = {}
        self.connections = 0
        self.stopping = False
        self.running = False
        self._timer = None
        self._timerAt = None
        self._due = []  # heap of (time, seq, item id): when items have work
        self._seq = itertools.count()
        self._workers = set()
        self._pumping = False
        self._pumpAgain = False
        self._io = set()  # file work of removed items still running
        self._removing = set()  # ids of items whose files are being removed
        self.unusable = {}  # id -> reason: bad items that could not be moved aside (logged once)
        self.stats = collections.Counter()

    # -- Life cycle ----------------------------------------------------------

    def start(self):
        """Load every item of the spool and start working."""
        for path in self.spool.cleanup():
            log.info("queue: removed the leftover {path}", path=path)
        for queueId in self.spool.ids():
            self._load(queueId)
        self.spool.addListener(self.added)
        self.running = True
        for item in list(self.items.values()):
            # A crash may have left final recipients unreported: report now.
            self._finishRound(item)
        if not self.spool.shared:
            log.info("queue: {n} items in the spool", n=len(self.items))
        self.wake()
        self.spool.attach(self)

    def claimed(self, queueId):
        """
        A shared queue handed us an item (claimed from the database: left by
        a dead node, or due): loaded, finished if a crash left it unreported,
        scheduled.
        """
        if self.stopping or queueId in self.items:
            return
        item = self._load(queueId)
        if item is not None:
            self._finishRound(item)
            self._arm()

    def lost(self, queueId):
        """
        A shared queue's item is no longer ours (another node holds it now):
        forgotten here without writing anything; deliveries of it still
        running finish, and their outcomes are not written (the other node
        has the item's state).
        """
        item = self.items.pop(queueId, None)
        if item is not None:
            item.deleted = True
        self.spool.lost(queueId)

    @defer.inlineCallbacks
    def stop(self):
        """Stop dispatching, let running transactions finish briefly, close."""
        self.stopping = True
        self.spool.removeListener(self.added)
        self.spool.detach()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        for dest in self.destinations.values():
            dest.queue.clear()
            for waiter in dest.idle:
                if not waiter.called:
                    waiter.callback(None)
            dest.idle = []
        if self._workers:
            grace = self.clock.callLater(STOP_GRACE, self._abortAll)
            yield defer.DeferredList(list(self._workers))
            if grace.active():
                grace.cancel()
        yield defer.DeferredList([_follow(item.chain) for item in self.items.values()] + list(self._io))
        yield self.spool.release()
        self.running = False

    def _abortAll(self):
        for dest in self.destinations.values():
            for session in list(dest.sessions):
                session.abort()

    def _load(self, queueId):
        try:
            envelope = self.spool.load(queueId)
        except FileNotFoundError:
            return None
        except (EnvelopeError, OSError) as e:
            self._setAside(queueId, e)
            return None
        item = Item(envelope)
        self.items[item.id] = item
        self.schedule(item)
        return item

    def _setAside(self, queueId, error):
        """
        An item that cannot be used (wrongly shaped or unreadable envelope,
        message file gone): logged once, moved to the spool's corrupt/
        directory with the reason, never retried; the queue goes on.
        """
        reason = problem(error)
        moved = self.spool.setAside(queueId, reason)
        self.stats["corrupt"] += 1
        log.error("queue {id}: {reason}; {what} (see `mailnet queue list`)", id=queueId, reason=reason,
                  what="set aside in the spool's corrupt/ directory" if moved else "could not move it aside, left alone")
        if not moved:
            self.unusable[queueId] = reason

    @defer.inlineCallbacks
    def _setAsideLoaded(self, item, reason):
        """An item already in memory that became unusable: written as it stands, then set aside."""
        if item.dirty:
            yield self.save(item)
        item.deleted = True
        self.items.pop(item.id, None)
        self._removing.add(item.id)
        try:
            yield _follow(item.chain)
            self._setAside(item.id, EnvelopeError(reason))
        finally:
            self._removing.discard(item.id)

    def rescan(self):
        """
        Pick up items that reached the spool without telling us (written by
        another program, or while we were not listening).  Returns how many.
        """
        found = 0
        for queueId in self.spool.ids():
            if queueId not in self.items and queueId not in self._removing and queueId not in self.unusable:
                if self._load(queueId) is not None:
                    found += 1
        if found:
            log.info("queue: found {n} new item(s) in the spool", n=found)
            self._arm()
        return found

    def added(self, queueId):
        """Spool listener: a new item is durable."""
        if self.stopping or queueId in self.items or queueId in self.unusable:
            return
        if self._load(queueId) is not None:
            self._arm()

    # -- Dispatch ---------------------------------------------------------
    #
    # Each item with work waiting has an entry in a heap keyed by the
    # earliest next_attempt of its active recipients (item.scheduledAt); one
    # timer waits for the top of the heap.  Waking costs the items that are
    # due, not the whole queue.

    def _earliest(self, item):
        if item.held or item.deleted:
            return None
        times = [r.next_attempt or 0 for i, r in enumerate(item.recipients)
                 if r.status in ACTIVE and i not in item.inflight]
        return min(times) if times else None

    def schedule(self, item):
        """Make sure the heap has an entry for the item's next work (not later than it)."""
        t = self._earliest(item)
        if t is None:
            return
        if item.scheduledAt is not None and item.scheduledAt <= t:
            return
        item.scheduledAt = t
        heapq.heappush(self._due, (t, next(self._seq), item.id))

    def _arm(self):
        """Set the timer for the top of the heap."""
        if self.stopping or not self.running:
            return
        if not self._due:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = self._timerAt = None
            return
        at = self._due[0][0]
        if self._timer is not None and self._timer.active():
            if self._timerAt == at:
                return
            self._timer.cancel()
        self._timerAt = at
        self._timer = self.clock.callLater(max(0.0, at - self.clock.seconds()), self.wake)

    def _destinationOf(self, address):
        domain = splitAddress(address)[1]
        if self.directory is not None and domain and self.directory.isLocalDomain(domain):
            return LOCAL
        if self.config.relay.smarthost:
            return SMARTHOST
        return domain or LOCAL

    def wake(self):
        """Dispatch what is due, then sleep until the next due time."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()  # called directly (flush, release, start)
        self._timer = self._timerAt = None
        if self.stopping:
            return
        now = self.clock.seconds()
        ready = {}
        while self._due and self._due[0][0] <= now:
            at, _, queueId = heapq.heappop(self._due)
            item = self.items.get(queueId)
            if item is None:
                continue
            if item.scheduledAt == at:
                item.scheduledAt = None
            ready[queueId] = item
        for item in ready.values():
            self._dispatch(item, now)
            self.schedule(item)
        self._pump()
        self._arm()

    def _dispatch(self, item, now):
        """Jobs for the item's due recipients, one per destination."""
        if item.held or item.deleted:
            return
        groups = {}
        for i, rcpt in enumerate(item.recipients):
            if rcpt.status in ACTIVE and i not in item.inflight and (rcpt.next_attempt or 0) <= now:
                groups.setdefault(self._destinationOf(rcpt.address), []).append(i)
        for key, indices in groups.items():
            for start in range(0, len(indices), MAX_RCPTS):
                chunk = indices[start:start + MAX_RCPTS]
                item.inflight.update(chunk)
                item.jobs += 1
                self._destination(key).queue.append(Job(item, key, chunk))

    # -- Files ----------------------------------------------------------------

    def save(self, item):
        """
        Write the item's envelope (serialized per item, coalesced).
        @return: Deferred firing once the state as of now is durable.
        """
        if item.saveQueued is not None:
            return _follow(item.saveQueued)
        done = defer.Deferred()
        item.saveQueued = done

        def run(_):
            item.saveQueued = None
            if item.deleted:
                return None
            item.dirty = False
            data = Spool.encode(item.envelope)
            return self.runInThread(self.spool.save, item.envelope, data)

        def failed(f):
            if f.check(LeaseLost):
                log.warn("queue {id}: another node took the item over; dropped here", id=item.id)
                self.lost(item.id)
                return
            log.failure("queue {id}: cannot write the envelope", f, id=item.id)

        item.chain.addCallback(run)
        item.chain.addErrback(failed)
        item.chain.addCallback(lambda _: done.callback(None))
        return _follow(done)

    def remove(self, item):
        item.deleted = True
        self.items.pop(item.id, None)
        self._removing.add(item.id)

        def run(_):
            return self.spool.removeItem(item.id, self.runInThread)

        item.chain.addCallback(run)
        def failed(f):
            if f.check(LeaseLost):
                log.warn("queue {id}: another node took the item over before its removal", id=item.id)
                return
            log.failure("queue {id}: cannot remove the item", f, id=item.id)

        item.chain.addErrback(failed)
        done = _follow(item.chain)
        self._io.add(done)

        def finished(_):
            self._io.discard(done)
            self._removing.discard(item.id)

        done.addBoth(finished)
        return _follow(done)

def _follow(d):
    """A new Deferred that fires (with None) when ``d`` does, leaving ``d`` alone."""
    out = defer.Deferred()

    def fire(result):
        if not out.called:
            out.callback(None)
        return result

    d.addBoth(fire)
    return out


