"""
Outcomes into the envelope, as functions on the typed envelope (no I/O, no
clock, no runner; table-tested in tests/queue/test_outcomes.py):

* :func:`record`: one recipient's outcome: ``sent``, ``failed``
  (permanent, or a temporary failure past the lifetime) or ``delayed`` with
  its next attempt; :func:`expand` adds an alias's remote targets.
* :func:`dueReports`, :func:`markUnreportable`, :func:`isDone`: what the
  end of an item's round has to do (DSNs to send, removal).

:class:`Outcomes` is the :class:`~mailnet.queue.scheduler.QueueRunner`
mixin that applies them to a finished job and logs one line per recipient.
"""

from __future__ import annotations

import dataclasses
import datetime
import random

from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.mail.codecs import encodeXtext
from mailnet.queue import schedule
from mailnet.queue.envelope import Envelope, RecipientState
from mailnet.queue.workers import LOCAL

log = Logger()

ACTIVE = ("pending", "delayed")
FINAL = ("sent", "failed")
NO_OUTCOME = DeliveryError(451, "4.3.0", "no outcome", True)


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


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What :func:`record` did, for the log line and the counters."""

    kind: str  # "sent", "deferred" or "bounced"
    nextAttempt: float | None = None  # deferred: when
    why: str | None = None  # bounced: the reason


def record(envelope: Envelope, rcpt: RecipientState, error: DeliveryError | None, now: float, retry, *,
           action: str = "relayed", host: str | None = None, peerDSN: bool = False, expandTo=None,
           draw=random.random) -> Recorded:
    """
    Write one delivery attempt's outcome into ``rcpt`` (a recipient of
    ``envelope``).

    @param error: None when delivered, else the :class:`DeliveryError`;
        ``temporary`` alone decides between a retry and a bounce.
    @param retry: the ``[queue]`` settings (``lifetime``, ``retry_initial``,
        ``retry_max``).
    @param action: the DSN action of a success: ``relayed`` (to a remote
        MTA), ``delivered`` or ``expanded`` (local).
    @param host: the remote host (``"name[address]"``), None for local.
    @param peerDSN: the remote MTA announced DSN (RFC 3461).
    @param expandTo: remote addresses the recipient (an alias) expanded to;
        they become new recipients of the item (:func:`expand`).
    @param draw: returns the random number for the retry jitter; called
        only when a temporary failure needs its next attempt.
    """
    rcpt.last_attempt = now
    rcpt.attempts += 1
    if error is None:
        rcpt.status = "sent"
        rcpt.action = action
        rcpt.last_error = None
        rcpt.remote_mta = _hostName(host)
        rcpt.next_attempt = None
        if expandTo:
            rcpt.expanded_to = list(expandTo)
            expand(envelope, rcpt, expandTo, now)
        # RFC 3461 s5.2.2: a DSN-capable next hop takes over the
        # success notification; otherwise we send "relayed".
        rcpt.reported = not notifies(rcpt, "SUCCESS") or (action == "relayed" and peerDSN)
        return Recorded("sent")
    rcpt.last_error = str(error)
    rcpt.remote_mta = error.remote
    if error.temporary:
        nextTime = schedule.next_attempt(
            now, envelope.arrival, rcpt.attempts, retry.lifetime,
            retry.retry_initial, retry.retry_max, draw=draw())
        if nextTime is not None:
            rcpt.status = "delayed"
            rcpt.next_attempt = nextTime
            return Recorded("deferred", nextAttempt=nextTime)
        why = f"gave up after {_age(now - envelope.arrival)} ({error})"
    else:
        why = str(error)
    rcpt.status = "failed"
    rcpt.action = "failed"
    rcpt.next_attempt = None
    rcpt.reported = not (envelope.sender and notifies(rcpt, "FAILURE"))
    return Recorded("bounced", why=why)


def expand(envelope: Envelope, rcpt: RecipientState, targets, now: float):
    """An alias to remote addresses: they become recipients of this item."""
    known = {r.address.lower() for r in envelope.recipients}
    orcpt = rcpt.orcpt or "rfc822;" + encodeXtext(rcpt.address)
    for target in targets:
        if target.lower() in known:
            continue
        known.add(target.lower())
        envelope.recipients.append(RecipientState(
            address=target, orcpt=orcpt, notify=rcpt.notify, status="pending", attempts=0,
            last_error=None, next_attempt=now, expanded_from=rcpt.address,
        ))


def dueReports(envelope: Envelope, now: float, delayWarning: float):
    """
    The DSNs due at the end of an item's round, as ``(kind, recipients)``
    in the order they go out: ``failure`` (failed, not reported),
    ``success`` (sent, not reported), ``delay`` (delayed recipients that
    want it, once after ``delayWarning`` seconds).  None for the null
    sender (:func:`markUnreportable`).

    A generator: each list is made when asked for, after the previous
    report was sent (which marks its recipients reported).  The caller sets
    ``delay_warned`` once the delay report is out.
    """
    if not envelope.sender:
        return
    failed = [r for r in envelope.recipients if r.status == "failed" and not r.reported]
    if failed:
        yield "failure", failed
    succeeded = [r for r in envelope.recipients if r.status == "sent" and not r.reported]
    if succeeded:
        yield "success", succeeded
    delayed = [r for r in envelope.recipients if r.status == "delayed" and notifies(r, "DELAY")]
    if delayed and schedule.delay_warning_due(now, envelope.arrival, delayWarning, envelope.delay_warned):
        yield "delay", delayed


def markUnreportable(envelope: Envelope) -> bool:
    """
    A message from the null sender (a DSN): its final recipients count as
    reported, since no DSN goes out about a DSN (RFC 3461 s6.2).
    @return: whether a recipient changed.
    """
    changed = False
    for r in envelope.recipients:
        if r.status in FINAL and not r.reported:
            r.reported = True
            changed = True
    return changed


def isDone(envelope: Envelope) -> bool:
    """Every recipient final and reported: the item can go."""
    return all(r.status in FINAL and r.reported for r in envelope.recipients)


class Outcomes:
    """A finished job's outcomes into its item, one log line each (QueueRunner's)."""

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
            error = outcomes.get(address, NO_OUTCOME)
            where = host or ("local" if job.destination == LOCAL else job.destination)
            action = actions.get(address, "relayed")
            done = record(env, rcpt, error, now, qconf, action=action, host=host, peerDSN=peerDSN,
                          expandTo=expansions.get(address), draw=self.rng.random)
            self.metrics.queueAttempts.labels(outcome=done.kind).inc()
            if done.kind == "sent":
                self.stats["sent"] += 1
                # docs/operations.md "Logs": stage=relayed, or stored for the local ones.
                stage = "relayed" if action == "relayed" else "stored"
                log.info("queue {id}: to=<{to}> via {host}: {action} ({reply}) stage={stage}",
                         id=item.id, to=address, host=where, action=action, reply=replies.get(address) or "ok",
                         stage=stage)
            elif done.kind == "deferred":
                self.stats["deferred"] += 1
                log.info("queue {id}: to=<{to}> via {host}: deferred ({error}); next attempt in {wait:.0f}s at {when}"
                         " stage=deferred",
                         id=item.id, to=address, host=where, error=str(error), wait=done.nextAttempt - now,
                         when=_when(done.nextAttempt), stage="deferred")
            else:
                self.stats["bounced"] += 1
                if not env.sender:
                    # RFC 3461 s6.2 / RFC 5321 s4.5.5: never a DSN about a DSN.
                    log.warn("queue {id}: to=<{to}> via {host}: undeliverable bounce dropped: {why} stage=bounced",
                             id=item.id, to=address, host=where, why=done.why, stage="bounced")
                else:
                    log.info("queue {id}: to=<{to}> via {host}: bounced: {why} stage=bounced", id=item.id, to=address,
                             host=where, why=done.why, stage="bounced")
        # Written by _jobDone: at once if other jobs of the item still run,
        # else at the end of the round (or not at all when the item is done
        # and removed: its removal records that everything was sent).
        item.dirty = True
        self._jobDone(job)

    def _jobDone(self, job):
        item = job.item
        item.inflight.difference_update(job.indices)
        item.jobs -= 1
        if item.jobs == 0:
            self._finishRound(item)
        elif item.dirty:
            self.save(item)
        if not item.deleted:
            self.schedule(item)
            self._arm()


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
