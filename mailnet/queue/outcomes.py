"""
Recording outcomes: per recipient, sent, failed or delayed (with its next
attempt), one log line each; the end of a job.  A mixin of
:class:`~mailnet.queue.scheduler.QueueRunner`.
"""

from __future__ import annotations

import datetime

from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.queue import schedule
from mailnet.queue.envelope import RecipientState
from mailnet.queue.workers import LOCAL

log = Logger()

ACTIVE = ("pending", "delayed")
FINAL = ("sent", "failed")


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


class Outcomes:
    """Outcomes into the item's envelope (QueueRunner's)."""

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
