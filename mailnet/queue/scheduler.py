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
   :data:`IDLE_SECONDS` in case more mail comes for the destination.  A
   destination opens one connection at a time until a session works (a dead
   destination costs one attempt per round, not one per message).
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

Crash safety: an outcome is recorded after the peer's reply, so a crash
between the reply and the fsync of the envelope means one more delivery
of that recipient after the restart; a recipient recorded ``sent`` is
never sent again.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import heapq
import itertools
import random
import secrets

from twisted.internet import defer, threads

from mailnet import localdelivery
from mailnet.auth import splitAddress
from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.queue import dsn, schedule
from mailnet.queue.client import Recipient, Transaction
from mailnet.queue.envelope import Envelope, EnvelopeError, RecipientState
from mailnet.queue.spool import Spool, problem

log = Logger()

LOCAL = "local"
SMARTHOST = "smarthost"
ACTIVE = ("pending", "delayed")
FINAL = ("sent", "failed")
MAX_RCPTS = 100  # RFC 5321 s4.5.3.1.8: every server takes at least 100
IDLE_SECONDS = 2.0  # keep an idle session this long (Postfix: smtp_connection_cache_time_limit)
STOP_GRACE = 10.0  # seconds running transactions get at shutdown


def _when(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def notifies(rcpt, what) -> bool:
    """
    Whether a DSN of kind ``what`` (FAILURE, DELAY, SUCCESS) may go out for
    this recipient.  RFC 3461 s4.1: no NOTIFY means FAILURE and (at our
    discretion) DELAY; NEVER means none.
    """
    notify = rcpt.notify
    if not notify:
        return what in ("FAILURE", "DELAY")
    notify = [n.upper() for n in notify]
    return "NEVER" not in notify and what in notify


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


@dataclasses.dataclass
class Job:
    """Some recipients of one item, for one destination."""

    item: Item
    destination: str
    indices: list  # indices into item.recipients

    def addresses(self):
        return list(dict.fromkeys(self.item.recipients[i].address for i in self.indices))


class Destination:
    def __init__(self, key):
        self.key = key
        self.queue = collections.deque()
        self.workers = 0
        self.connecting = 0
        self.sessions = set()  # live sessions of this destination's workers
        self.idle = []  # Deferreds of workers waiting for a job


class QueueRunner:
    """
    The scheduler.  Everything happens on the reactor thread; file writes go
    through ``runInThread``.

    @param spool: the :class:`~mailnet.queue.spool.Spool` (the caller holds
        its lock).
    @param config: the :class:`~mailnet.config.Config`.
    @param clock: ``IReactorTime`` (a ``task.Clock`` in tests).
    @param connector: opens remote sessions: ``connect(destination)`` ->
        Deferred firing with a session (``deliver(Transaction)`` ->
        Deferred[:class:`~mailnet.queue.client.Result`], ``quit()``,
        ``abort()``, ``alive``, ``host``, ``closed``) or failing with
        :class:`DeliveryError`.  See :class:`~mailnet.queue.relay.SMTPConnector`.
    @param directory: :class:`~mailnet.auth.Directory` (local domains, aliases).
    @param store: ``IMailStore`` for local recipients.
    """

    def __init__(self, spool: Spool, config, clock, connector, directory=None, store=None,
                 hostname=None, rng=None, runInThread=None):
        self.spool = spool
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
        self._unusable = {}  # id -> reason: bad items that could not be moved aside (logged once)
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
        log.info("queue: {n} items in the spool", n=len(self.items))
        self._wake()

    @defer.inlineCallbacks
    def stop(self):
        """Stop dispatching, let running transactions finish briefly, close."""
        self.stopping = True
        self.spool.removeListener(self.added)
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
        self._schedule(item)
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
            self._unusable[queueId] = reason

    @defer.inlineCallbacks
    def _setAsideLoaded(self, item, reason):
        """An item already in memory that became unusable: written as it stands, then set aside."""
        if item.dirty:
            yield self._save(item)
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
            if queueId not in self.items and queueId not in self._removing and queueId not in self._unusable:
                if self._load(queueId) is not None:
                    found += 1
        if found:
            log.info("queue: found {n} new item(s) in the spool", n=found)
            self._arm()
        return found

    def added(self, queueId):
        """Spool listener: a new item is durable."""
        if self.stopping or queueId in self.items or queueId in self._unusable:
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

    def _schedule(self, item):
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
        self._timer = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._wake)

    def _destinationOf(self, address):
        domain = splitAddress(address)[1]
        if self.directory is not None and domain and self.directory.isLocalDomain(domain):
            return LOCAL
        if self.config.relay.smarthost:
            return SMARTHOST
        return domain or LOCAL

    def _wake(self):
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
            self._schedule(item)
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

    def _destination(self, key):
        dest = self.destinations.get(key)
        if dest is None:
            dest = self.destinations[key] = Destination(key)
        return dest

    def _pump(self):
        """Give queued jobs to idle workers; start workers within the limits."""
        if self.stopping:
            return
        # Workers start synchronously and may call back in here: run once
        # more instead of re-entering.
        if self._pumping:
            self._pumpAgain = True
            return
        self._pumping = True
        try:
            self._pumpAgain = True
            while self._pumpAgain:
                self._pumpAgain = False
                self._pumpOnce()
        finally:
            self._pumping = False

    def _pumpOnce(self):
        relay = self.config.relay
        for dest in list(self.destinations.values()):
            while dest.queue and dest.idle:
                waiter = dest.idle.pop(0)
                if not waiter.called:
                    waiter.callback(dest.queue.popleft())
            if dest.key == LOCAL:
                while dest.queue and dest.workers < relay.max_connections_per_destination:
                    self._spawn(dest, self._localWorker)
                continue
            while (dest.queue and dest.workers < relay.max_connections_per_destination
                   and self.connections < relay.max_connections and dest.connecting == 0
                   and (dest.workers == 0 or dest.sessions)):
                # Slow start: one connection attempt at a time per destination,
                # and a second connection only once a session works.
                self.connections += 1
                self._spawn(dest, self._remoteWorker)
            if not dest.queue and not dest.workers and not dest.idle and self.destinations.get(dest.key) is dest:
                del self.destinations[dest.key]

    def _spawn(self, dest, worker):
        dest.workers += 1
        d = worker(dest)
        self._workers.add(d)

        def done(result):
            self._workers.discard(d)
            return result

        d.addBoth(done)
        d.addErrback(lambda f: log.failure("queue worker for {dest} crashed", f, dest=dest.key))
        return d

    def _nextJob(self, dest):
        while dest.queue:
            job = dest.queue.popleft()
            if job.item.deleted:
                self._jobDone(job)
                continue
            return job
        return None

    # -- Remote delivery ----------------------------------------------------

    @defer.inlineCallbacks
    def _remoteWorker(self, dest):
        relay = self.config.relay
        session = None
        sent = 0
        try:
            while not self.stopping:
                job = self._nextJob(dest)
                if job is None and session is not None and session.alive and sent < relay.messages_per_connection:
                    job = yield self._idleWait(dest, session)
                if job is None:
                    break
                if session is None or not session.alive or sent >= relay.messages_per_connection:
                    if session is not None:
                        dest.sessions.discard(session)
                        session.quit()
                        session = None
                    sent = 0
                    dest.connecting += 1
                    try:
                        session = yield self.connector.connect(dest.key)
                    except DeliveryError as e:
                        self._connectFailed(dest, job, e)
                        break
                    except Exception as e:  # a bug, not the peer's fault: keep the mail
                        log.failure("queue: connecting to {dest} failed unexpectedly", dest=dest.key)
                        self._connectFailed(dest, job, DeliveryError(451, "4.3.0", f"internal error: {e}", True))
                        break
                    finally:
                        dest.connecting -= 1
                    dest.sessions.add(session)
                    self.stats["connections"] += 1
                    self._pump()  # a working session: the destination may take more
                if job.item.deleted:
                    self._jobDone(job)
                    continue
                result = yield session.deliver(self._transaction(job))
                sent += 1
                self._recordRemote(job, result, session)
        finally:
            if session is not None:
                dest.sessions.discard(session)
                if session.alive:
                    session.quit()
            dest.workers -= 1
            self.connections -= 1
            self._pump()

    def _idleWait(self, dest, session):
        """Wait up to IDLE_SECONDS for a job for this destination; None if none comes."""
        waiter = defer.Deferred()
        dest.idle.append(waiter)

        def give(value):
            if not waiter.called:
                if waiter in dest.idle:
                    dest.idle.remove(waiter)
                waiter.callback(value)

        timer = self.clock.callLater(IDLE_SECONDS, give, None)
        session.closed.addCallback(lambda _: give(None))

        def cleanup(job):
            if timer.active():
                timer.cancel()
            return job

        return waiter.addCallback(cleanup)

    def _connectFailed(self, dest, job, error):
        if dest.sessions:
            # Other connections to this destination work: leave the job to them.
            dest.queue.appendleft(job)
            log.info("queue: another connection to {dest} failed ({e}); using the open ones", dest=dest.key, e=error)
            return
        jobs = [job] + list(dest.queue)
        dest.queue.clear()
        for j in jobs:
            self._record(j, {a: error for a in j.addresses()}, host=None)

    def _transaction(self, job):
        env = job.item.envelope
        recipients = []
        seen = set()
        for i in job.indices:
            r = job.item.recipients[i]
            if r.address in seen:
                continue
            seen.add(r.address)
            recipients.append(Recipient(r.address, r.notify, r.orcpt))
        return Transaction(
            sender=env.sender, recipients=recipients, size=env.size,
            body=env.body or "7BIT", smtputf8=env.smtputf8,
            envid=env.envid, ret=env.ret,
            open=lambda: self.spool.openData(job.item.id), tag=job,
        )

    def _recordRemote(self, job, result, session):
        if result.uncertain:
            log.warn("queue {id}: connection to {host} lost after the message was sent; it may arrive twice",
                     id=job.item.id, host=session.host)
        actions = {}
        for address, error in result.outcomes.items():
            if error is None:
                actions[address] = "relayed"
        self._record(job, result.outcomes, host=session.host, actions=actions, peerDSN=result.dsn,
                     replies={a: str(result.reply) for a in actions if result.reply is not None})

    # -- Local delivery -----------------------------------------------------

    @defer.inlineCallbacks
    def _localWorker(self, dest):
        try:
            while not self.stopping:
                job = self._nextJob(dest)
                if job is None:
                    break
                outcomes, actions, expansions = yield self._deliverLocal(job)
                self._record(job, outcomes, host=None, actions=actions, expansions=expansions)
        finally:
            dest.workers -= 1
            self._pump()

    @defer.inlineCallbacks
    def _deliverLocal(self, job):
        """Deliver a job's recipients into the store (aliases expanded)."""
        outcomes, actions, expansions = {}, {}, {}
        users = {}
        for address in job.addresses():
            resolution = self.directory.resolve(address) if self.directory is not None else None
            if resolution is None:
                outcomes[address] = DeliveryError(550, "5.1.1", f"<{address}>: no such user here", False)
                continue
            users[address] = resolution.local
            remote = [a for a in resolution.remote if a.lower() != address.lower()]
            if remote:
                expansions[address] = remote
        wanted = list(dict.fromkeys(u for names in users.values() for u in names))
        error = None
        if wanted:
            if self.store is None:
                error = DeliveryError(451, "4.3.0", "no mail store configured", True)
            else:
                error = yield self._storeDelivery(job.item, wanted)
        for address, names in users.items():
            if names and error is not None:
                outcomes[address] = error
            else:
                outcomes[address] = None
                actions[address] = "expanded" if address in expansions or len(names) > 1 else "delivered"
        return outcomes, actions, expansions

    @defer.inlineCallbacks
    def _storeDelivery(self, item, usernames):
        try:
            yield localdelivery.deliverFile(self.store, usernames, item.envelope.sender,
                                            lambda: self.spool.openData(item.id), item.envelope.arrival)
        except Exception as e:
            error = localdelivery.storeFailure(e, perRecipient=True)
            if error.temporary:
                log.error("queue {id}: local delivery failed: {e!r}", id=item.id, e=e)
            return error
        return None

    # -- Recording outcomes -------------------------------------------------

    def _record(self, job, outcomes, host, actions=None, expansions=None, peerDSN=False, replies=None):
        """
        Write the outcome of one job into the item: per recipient, sent,
        failed or delayed (with its next attempt), and log one line each.
        """
        item = job.item
        if item.deleted:
            self._jobDone(job)
            return
        actions = actions or {}
        expansions = expansions or {}
        replies = replies or {}
        now = self.clock.seconds()
        env = item.envelope
        qconf = self.config.queue
        for i in job.indices:
            rcpt = item.recipients[i]
            address = rcpt.address
            error = outcomes.get(address, DeliveryError(451, "4.3.0", "no outcome", True))
            rcpt.last_attempt = now
            rcpt.attempts += 1
            where = host or ("local" if job.destination == LOCAL else job.destination)
            if error is None:
                action = actions.get(address, "relayed")
                rcpt.status = "sent"
                rcpt.action = action
                rcpt.last_error = None
                rcpt.remote_mta = _hostName(host)
                rcpt.next_attempt = None
                if address in expansions:
                    rcpt.expanded_to = list(expansions[address])
                    self._expand(item, rcpt, expansions[address], now)
                # RFC 3461 s5.2.2: a DSN-capable next hop takes over the
                # success notification; otherwise we send "relayed".
                rcpt.reported = not notifies(rcpt, "SUCCESS") or (action == "relayed" and peerDSN)
                self.stats["sent"] += 1
                log.info("queue {id}: to=<{to}> via {host}: {action} ({reply})",
                         id=item.id, to=address, host=where, action=action, reply=replies.get(address) or "ok")
                continue
            rcpt.last_error = str(error)
            rcpt.remote_mta = error.remote
            if error.temporary:
                nextTime = schedule.next_attempt(
                    now, env.arrival, rcpt.attempts, qconf.lifetime,
                    qconf.retry_initial, qconf.retry_max, draw=self.rng.random())
                if nextTime is not None:
                    rcpt.status = "delayed"
                    rcpt.next_attempt = nextTime
                    self.stats["deferred"] += 1
                    log.info("queue {id}: to=<{to}> via {host}: deferred ({error}); next attempt in {wait:.0f}s at {when}",
                             id=item.id, to=address, host=where, error=str(error), wait=nextTime - now, when=_when(nextTime))
                    continue
                why = f"gave up after {_age(now - env.arrival)} ({error})"
            else:
                why = str(error)
            rcpt.status = "failed"
            rcpt.action = "failed"
            rcpt.next_attempt = None
            rcpt.reported = not (env.sender and notifies(rcpt, "FAILURE"))
            self.stats["bounced"] += 1
            if not env.sender:
                # RFC 3461 s6.2 / RFC 5321 s4.5.5: never a DSN about a DSN.
                log.warn("queue {id}: to=<{to}> via {host}: undeliverable bounce dropped: {why}",
                         id=item.id, to=address, host=where, why=why)
            else:
                log.info("queue {id}: to=<{to}> via {host}: bounced: {why}", id=item.id, to=address, host=where, why=why)
        # Written by _jobDone: at once if other jobs of the item still run,
        # else at the end of the round (or not at all when the item is done
        # and removed: its removal records that everything was sent).
        item.dirty = True
        self._jobDone(job)

    def _expand(self, item, rcpt, targets, now):
        """An alias to remote addresses: they become recipients of this item."""
        known = {r.address.lower() for r in item.recipients}
        orcpt = rcpt.orcpt or "rfc822;" + _xtext(rcpt.address)
        for target in targets:
            if target.lower() in known:
                continue
            known.add(target.lower())
            item.recipients.append(RecipientState(
                address=target, orcpt=orcpt, notify=rcpt.notify, status="pending", attempts=0,
                last_error=None, next_attempt=now, expanded_from=rcpt.address,
            ))

    def _jobDone(self, job):
        item = job.item
        item.inflight.difference_update(job.indices)
        item.jobs -= 1
        if item.jobs == 0:
            self._finishRound(item)
        elif item.dirty:
            self._save(item)
        if not item.deleted:
            self._schedule(item)
            self._arm()

    # -- End of a round: DSNs, removal --------------------------------------

    def _finishRound(self, item):
        if item.finishing:
            item.finishAgain = True
            return
        item.finishing = True
        d = self._finish(item)

        def done(_):
            item.finishing = False
            if item.finishAgain:
                item.finishAgain = False
                self._finishRound(item)

        d.addErrback(lambda f: log.failure("queue {id}: finishing the round failed", f, id=item.id))
        d.addCallback(done)

    @defer.inlineCallbacks
    def _finish(self, item):
        if item.deleted:
            return
        if item.jobs:
            if item.dirty:
                yield self._save(item)
            return
        if any(r.status in ACTIVE for r in item.recipients) and not self.spool.hasData(item.id):
            # The message went away under us: nothing to retry for days.
            yield self._setAsideLoaded(item, "the message file (.msg) is missing")
            return
        env = item.envelope
        now = self.clock.seconds()
        changed = False
        if env.sender:
            failed = [r for r in item.recipients if r.status == "failed" and not r.reported]
            if failed:
                yield self._sendDSN(item, "failure", failed)
                changed = True
            succeeded = [r for r in item.recipients if r.status == "sent" and not r.reported]
            if succeeded:
                yield self._sendDSN(item, "success", succeeded)
                changed = True
            qconf = self.config.queue
            delayed = [r for r in item.recipients if r.status == "delayed" and notifies(r, "DELAY")]
            if delayed and schedule.delay_warning_due(now, env.arrival, qconf.delay_warning, env.delay_warned):
                yield self._sendDSN(item, "delay", delayed)
                env.delay_warned = True
                changed = True
        else:
            for r in item.recipients:
                if r.status in FINAL and not r.reported:
                    r.reported = True
                    changed = True
        if all(r.status in FINAL and r.reported for r in item.recipients):
            log.debug("queue {id}: done, removed", id=item.id)
            yield self._remove(item)
            return
        if changed or item.dirty:
            yield self._save(item)

    @defer.inlineCallbacks
    def _sendDSN(self, item, kind, rcpts):
        env = item.envelope
        qconf = self.config.queue
        reports = []
        for r in rcpts:
            if kind == "failure":
                error = DeliveryError.fromString(r.last_error or "550 5.0.0 failed")
                status = error.enhanced
                action = "failed"
            elif kind == "delay":
                error = DeliveryError.fromString(r.last_error or "451 4.0.0 delayed")
                status = error.enhanced
                action = "delayed"
            else:
                error = None
                status = "2.0.0"
                action = r.action or "relayed"
            reports.append(dsn.RecipientReport(
                address=r.address, action=action, status=status,
                diagnostic=str(error) if error is not None else None,
                remote=r.remote_mta if error is not None else None,
                orcpt=r.orcpt, lastAttempt=r.last_attempt,
                willRetryUntil=env.arrival + qconf.lifetime if kind == "delay" else None,
            ))
        messageId = f"<{item.id}.{kind}.{secrets.token_hex(4)}@{self.hostname}>"
        date = self.clock.seconds()

        limit = qconf.bounce_size_limit
        fields = env.toDict()

        def make():
            try:
                with self.spool.openData(item.id) as f:
                    # One byte more than may be returned: dsn.build sees that
                    # the message is too large and returns (part of) its header.
                    original = f.read(limit + 1)
            except FileNotFoundError:
                original = None
            build = lambda e, o: dsn.build(kind, e, reports, o, reportingMTA=self.hostname, date=date,  # noqa: E731
                                           messageId=messageId, returnLimit=limit)
            try:
                return build(fields, original)
            except Exception as e:
                # A message the email package cannot regenerate must not keep
                # its sender from hearing of the failure: header only, then nothing.
                log.warn("queue {id}: cannot attach the message to the DSN ({e!r}); trying with less", id=item.id, e=e)
                try:
                    return build(dict(fields, ret="HDRS"), original)
                except Exception:
                    return build(fields, None)

        data = yield self.runInThread(make)
        writer = self.spool.newMessage(
            "", [{"address": env.sender}], smtputf8=env.smtputf8 or not env.sender.isascii(),
            body="8BITMIME" if any(b > 127 for b in data) else "7BIT", client=None, auth=None,
            arrival=self.clock.seconds())
        try:
            writer.write(data)
            newId = yield writer.commit()
        except Exception:
            writer.abort()
            raise
        for r in rcpts:
            if kind != "delay":
                r.reported = True
        self.stats[f"dsn_{kind}"] += 1
        log.info("queue {id}: {kind} DSN for {n} recipient(s) queued as {new}, to <{to}>",
                 id=item.id, kind=kind, n=len(rcpts), new=newId, to=env.sender)

    # -- Files ----------------------------------------------------------------

    def _save(self, item):
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
            log.failure("queue {id}: cannot write the envelope", f, id=item.id)

        item.chain.addCallback(run)
        item.chain.addErrback(failed)
        item.chain.addCallback(lambda _: done.callback(None))
        return _follow(done)

    def _remove(self, item):
        item.deleted = True
        self.items.pop(item.id, None)
        self._removing.add(item.id)

        def run(_):
            return self.runInThread(self.spool.remove, item.id)

        item.chain.addCallback(run)
        item.chain.addErrback(lambda f: log.failure("queue {id}: cannot remove the item", f, id=item.id))
        done = _follow(item.chain)
        self._io.add(done)

        def finished(_):
            self._io.discard(done)
            self._removing.discard(item.id)

        done.addBoth(finished)
        return _follow(done)

    # -- Operator commands ----------------------------------------------------

    def list(self):
        """The envelopes, by id."""
        return [item.envelope for item in sorted(self.items.values(), key=lambda i: i.id)]

    def corrupt(self):
        """``[(id, reason)]``: the items set aside, and bad ones that could not be moved."""
        return sorted(set(self.spool.corruptItems()) | set(self._unusable.items()))

    def get(self, queueId):
        item = self.items.get(queueId)
        if item is None:
            raise KeyError(f"no queue item {queueId}")
        return item

    def flush(self, queueId=None):
        """
        Make active recipients due now (all items, or one); held items are
        left alone.  Items another program put in the spool are picked up.
        """
        self.rescan()
        items = [self.get(queueId)] if queueId else list(self.items.values())
        now = self.clock.seconds()
        count = 0
        for item in items:
            if item.held:
                continue
            for i, rcpt in enumerate(item.recipients):
                if rcpt.status in ACTIVE and i not in item.inflight:
                    # In memory only: if we crash first, the old time is as good.
                    rcpt.next_attempt = now
                    count += 1
            self._schedule(item)
        self._wake()
        return count

    @defer.inlineCallbacks
    def delete(self, queueId):
        item = self.get(queueId)
        log.info("queue {id}: deleted by the operator", id=queueId)
        yield self._remove(item)

    @defer.inlineCallbacks
    def hold(self, queueId):
        item = self.get(queueId)
        item.envelope.held = True
        yield self._save(item)
        log.info("queue {id}: held by the operator", id=queueId)

    @defer.inlineCallbacks
    def release(self, queueId):
        item = self.get(queueId)
        item.envelope.held = False
        yield self._save(item)
        log.info("queue {id}: released by the operator", id=queueId)
        self._schedule(item)
        self._wake()


def _follow(d):
    """A new Deferred that fires (with None) when ``d`` does, leaving ``d`` alone."""
    out = defer.Deferred()

    def fire(result):
        if not out.called:
            out.callback(None)
        return result

    d.addBoth(fire)
    return out


def _hostName(host):
    if not host:
        return None
    return host.split("[", 1)[0]


def _age(seconds):
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f} seconds"


def _xtext(value):
    from mailnet.queue.client import xtextEncode

    return xtextEncode(value)
