"""
The queue's workers: a queue of jobs per destination, remote workers that
reuse one SMTP session for several jobs, the local worker that delivers into
the store.  A mixin of :class:`~mailnet.queue.scheduler.QueueRunner`.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING

from twisted.internet import defer

from mailnet import localdelivery
from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.queue.clientmachine import Recipient, Transaction

if TYPE_CHECKING:
    from mailnet.queue.scheduler import Item

log = Logger()

LOCAL = "local"
SMARTHOST = "smarthost"
IDLE_SECONDS = 2.0  # keep an idle session this long (Postfix: smtp_connection_cache_time_limit)


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



class Workers:
    """Jobs to workers, workers to sessions or the store (QueueRunner's)."""

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
        sender = env.sender
        if self.srs is not None:
            # Forwarded mail: MAIL FROM in SRS form, so that SPF at the next
            # hop checks our domain and bounces come back through us.
            try:
                sender = self.srs.relaySender(sender, env.auth)
            except Exception:  # the secret cannot be made (a full disk): sent as it was
                log.failure("queue {id}: SRS rewriting failed; relayed with the original sender", id=job.item.id)
        return Transaction(
            sender=sender, recipients=recipients, size=env.size,
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
        if self.store is not None:
            # The quota (RFC 3463 X.2.2): a recipient whose one mailbox is
            # full gets 452 4.2.2 (retried, bounced at the end of the
            # lifetime) or 552 5.2.2 (larger than the quota: bounced now).
            size = job.item.envelope.size or 0
            for address, names in list(users.items()):
                if len(names) == 1:
                    refusal = localdelivery.quotaRefusal(self.store, names[0], size)
                    if refusal is not None:
                        outcomes[address] = refusal
                        del users[address]
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
                                            lambda: self.spool.openData(item.id), item.envelope.arrival,
                                            metrics=self.metrics)
        except Exception as e:
            error = localdelivery.storeFailure(e, perRecipient=True)
            if error.temporary:
                log.error("queue {id}: local delivery failed: {e!r}", id=item.id, e=e)
            return error
        return None
