"""
The operator commands on a running queue (``mailnet queue`` through the
control socket, :mod:`mailnet.queue.control`), over the named methods of a
:class:`~mailnet.queue.scheduler.QueueRunner`.
"""

from __future__ import annotations

from twisted.internet import defer

from mailnet.logs import Logger
from mailnet.queue.outcomes import ACTIVE

log = Logger()


class QueueAdmin:
    """list, corrupt, get, flush, delete, hold, release on ``runner``."""

    def __init__(self, runner):
        self.runner = runner
        self.spool = runner.spool

    def rescan(self):
        """Pick up items another program put in the spool (see :meth:`QueueRunner.rescan`)."""
        return self.runner.rescan()

    def isLoaded(self, queueId) -> bool:
        """Whether the runner has the item in memory (a usable item)."""
        return queueId in self.runner.items

    def list(self):
        """The envelopes, by id."""
        return [item.envelope for item in sorted(self.runner.items.values(), key=lambda i: i.id)]

    def corrupt(self):
        """``[(id, reason)]``: the items set aside, and bad ones that could not be moved."""
        return sorted(set(self.spool.corruptItems()) | set(self.runner.unusable.items()))

    def get(self, queueId):
        item = self.runner.items.get(queueId)
        if item is None:
            raise KeyError(f"no queue item {queueId}")
        return item

    def flush(self, queueId=None):
        """
        Make active recipients due now (all items, or one); held items are
        left alone.  Items another program put in the spool are picked up.
        """
        self.runner.rescan()
        items = [self.get(queueId)] if queueId else list(self.runner.items.values())
        now = self.runner.clock.seconds()
        count = 0
        for item in items:
            if item.held:
                continue
            for i, rcpt in enumerate(item.recipients):
                if rcpt.status in ACTIVE and i not in item.inflight:
                    # In memory only: if we crash first, the old time is as good.
                    rcpt.next_attempt = now
                    count += 1
            self.runner.schedule(item)
        self.runner.wake()
        return count

    @defer.inlineCallbacks
    def delete(self, queueId):
        item = self.get(queueId)
        log.info("queue {id}: deleted by the operator", id=queueId)
        yield self.runner.remove(item)

    @defer.inlineCallbacks
    def hold(self, queueId):
        item = self.get(queueId)
        item.envelope.held = True
        yield self.runner.save(item)
        log.info("queue {id}: held by the operator", id=queueId)

    @defer.inlineCallbacks
    def release(self, queueId):
        item = self.get(queueId)
        item.envelope.held = False
        yield self.runner.save(item)
        log.info("queue {id}: released by the operator", id=queueId)
        self.runner.schedule(item)
        self.runner.wake()
