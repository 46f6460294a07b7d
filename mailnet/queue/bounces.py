"""
The end of an item's round: the DSNs (failure, success, delay warning),
built with :mod:`mailnet.queue.dsn` and queued as new spool items from the
null sender, then the item's removal once everything is final and
reported.  A mixin of :class:`~mailnet.queue.scheduler.QueueRunner`.
"""

from __future__ import annotations

import secrets

from twisted.internet import defer

from mailnet.errors import DeliveryError
from mailnet.logs import Logger
from mailnet.queue import dsn, outcomes
from mailnet.queue.outcomes import ACTIVE

log = Logger()


class Bounces:
    """DSNs and removal at the end of a round (QueueRunner's)."""

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
                yield self.save(item)
            return
        if any(r.status in ACTIVE for r in item.recipients) and not self.spool.hasData(item.id):
            # The message went away under us: nothing to retry for days.
            yield self._setAsideLoaded(item, "the message file (.msg) is missing")
            return
        env = item.envelope
        now = self.clock.seconds()
        changed = False
        if env.sender:
            for kind, rcpts in outcomes.dueReports(env, now, self.config.queue.delay_warning):
                yield self._sendDSN(item, kind, rcpts)
                if kind == "delay":
                    env.delay_warned = True
                changed = True
        else:
            changed = outcomes.markUnreportable(env)
        if outcomes.isDone(env):
            log.debug("queue {id}: done, removed", id=item.id)
            yield self.remove(item)
            return
        if changed or item.dirty:
            yield self.save(item)

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

        # Issue 16: our own report, from our domain: DKIM-signed once, before it is spooled.
        signer = self.__dict__.get("_ownMailSigner")
        if signer is None:
            from mailnet.mailauth.ownmail import OwnMailSigner

            signer = self._ownMailSigner = OwnMailSigner(self.config, self.clock)
        signingKeys = signer.keysFor(self.hostname)
        data = yield self.runInThread(lambda: signer.sign(make(), signingKeys))
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
        self.metrics.dsnsSent.labels(kind=kind).inc()
        log.info("queue {id}: {kind} DSN for {n} recipient(s) queued as {new}, to <{to}>",
                 id=item.id, kind=kind, n=len(rcpts), new=newId, to=env.sender)
