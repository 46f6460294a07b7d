"""
mailnet.queue.outcomes: one recipient's outcome into the typed envelope, and
what the end of a round has to do, as tables (no runner, no clock, no I/O).
"""

import types

import pytest

from mailnet.errors import DeliveryError
from mailnet.queue.envelope import Envelope, RecipientState
from mailnet.queue.outcomes import dueReports, expand, isDone, markUnreportable, notifies, record

DAY = 86400
RETRY = types.SimpleNamespace(lifetime=5 * DAY, retry_initial=300, retry_max=4000)
LATER = DeliveryError(451, "4.7.1", "greylisted", True, "mx.remote.test")
NO = DeliveryError(550, "5.1.1", "no such user", False, "mx.remote.test")


def envelope(*rcpts, sender="alice@example.test", **kw):
    rcpts = [r if isinstance(r, RecipientState) else RecipientState(address=r) for r in rcpts]
    return Envelope(id="0123456789abcdef", sender=sender, recipients=rcpts, arrival=0.0, **kw)


def noDraw():
    raise AssertionError("no jitter is drawn for this outcome")


@pytest.mark.parametrize("notify,what,expected", [
    (None, "FAILURE", True), (None, "DELAY", True), (None, "SUCCESS", False),
    (["NEVER"], "FAILURE", False), (["success"], "SUCCESS", True), (["SUCCESS"], "FAILURE", False),
    (["FAILURE", "DELAY"], "DELAY", True), ([], "FAILURE", True),
])
def test_notifies(notify, what, expected):
    assert notifies(RecipientState(address="b@x", notify=notify), what) is expected


# (error, now, notify, sender, action, peerDSN) ->
#     (kind, status, action, next_attempt, reported, last_error)
@pytest.mark.parametrize("error,now,notify,sender,action,peerDSN,expected", [
    # delivered: reported unless NOTIFY=SUCCESS asks for a report
    (None, 1000, None, "a@x", "relayed", False, ("sent", "sent", "relayed", None, True, None)),
    (None, 1000, ["SUCCESS"], "a@x", "relayed", False, ("sent", "sent", "relayed", None, False, None)),
    # RFC 3461 s5.2.2: a DSN-capable next hop takes over the success report
    (None, 1000, ["SUCCESS"], "a@x", "relayed", True, ("sent", "sent", "relayed", None, True, None)),
    (None, 1000, ["SUCCESS"], "a@x", "delivered", True, ("sent", "sent", "delivered", None, False, None)),
    # temporary: retried on schedule, then given up at the end of the lifetime
    (LATER, 1000, None, "a@x", "relayed", False, ("deferred", "delayed", None, 1300, False, str(LATER))),
    (LATER, 5 * DAY, None, "a@x", "relayed", False, ("bounced", "failed", "failed", None, False, str(LATER))),
    # permanent: failed; reported at once when no DSN may go out
    (NO, 1000, None, "a@x", "relayed", False, ("bounced", "failed", "failed", None, False, str(NO))),
    (NO, 1000, ["NEVER"], "a@x", "relayed", False, ("bounced", "failed", "failed", None, True, str(NO))),
    (NO, 1000, ["DELAY"], "a@x", "relayed", False, ("bounced", "failed", "failed", None, True, str(NO))),
    (NO, 1000, None, "", "relayed", False, ("bounced", "failed", "failed", None, True, str(NO))),
])
def test_record(error, now, notify, sender, action, peerDSN, expected):
    rcpt = RecipientState(address="bob@remote.test", notify=notify, attempts=0)
    env = envelope(rcpt, sender=sender)
    temporaryRetry = error is not None and error.temporary and expected[0] == "deferred"
    done = record(env, rcpt, error, now, RETRY, action=action, host="mx.remote.test[192.0.2.1]" if error is None else None,
                  peerDSN=peerDSN, draw=(lambda: 0.5) if error is not None and error.temporary else noDraw)
    kind, status, rcptAction, nextAttempt, reported, lastError = expected
    assert done.kind == kind
    assert (rcpt.status, rcpt.action, rcpt.next_attempt, rcpt.reported, rcpt.last_error) == \
        (status, rcptAction, nextAttempt, reported, lastError)
    assert rcpt.attempts == 1 and rcpt.last_attempt == now
    assert done.nextAttempt == (nextAttempt if temporaryRetry else None)
    assert rcpt.remote_mta == "mx.remote.test"  # the host's name, or the remote in the error
    assert (done.why is not None) == (kind == "bounced")
    if kind == "bounced" and error.temporary:
        assert done.why == f"gave up after 5.0 days ({LATER})"


def test_expansion_adds_new_recipients_once_with_the_alias_as_orcpt():
    team = RecipientState(address="team@example.test", notify=["SUCCESS"])
    env = envelope(team, "carol@far.test")
    done = record(env, team, None, 50, RETRY, action="expanded", expandTo=["Carol@far.test", "dave@far.test"],
                  draw=noDraw)
    assert done.kind == "sent" and team.expanded_to == ["Carol@far.test", "dave@far.test"]
    [old, new] = env.recipients[1:]
    assert old.address == "carol@far.test"  # already a recipient: not twice
    assert (new.address, new.status, new.next_attempt, new.expanded_from, new.notify, new.orcpt) == \
        ("dave@far.test", "pending", 50, "team@example.test", ["SUCCESS"], "rfc822;team@example.test")
    expand(env, RecipientState(address="x+y=z@example.test"), ["eve@far.test"], 60)
    assert env.recipients[-1].orcpt == "rfc822;x+2By+3Dz@example.test"  # RFC 3461 s4: xtext


def state(address, status, reported=False, notify=None):
    return RecipientState(address=address, status=status, reported=reported, notify=notify)


# recipients (status, reported, notify), now, delay_warned -> the reports in order
@pytest.mark.parametrize("rcpts,now,warned,expected", [
    ([("failed", False, None), ("sent", False, None)], 10, False, [("failure", ["r0"]), ("success", ["r1"])]),
    ([("failed", True, None), ("sent", True, None)], 10, False, []),
    ([("delayed", False, None)], 4 * 3600, False, [("delay", ["r0"])]),
    ([("delayed", False, None)], 4 * 3600 - 1, False, []),
    ([("delayed", False, None)], 5 * 3600, True, []),  # once
    ([("delayed", False, ["FAILURE"]), ("delayed", False, None)], 5 * 3600, False, [("delay", ["r1"])]),
    ([("pending", False, None), ("sent", False, ["SUCCESS"])], 10, False, [("success", ["r1"])]),
])
def test_due_reports(rcpts, now, warned, expected):
    env = envelope(*[state(f"r{i}", s, rep, n) for i, (s, rep, n) in enumerate(rcpts)], delay_warned=warned)
    got = [(kind, [r.address for r in rs]) for kind, rs in dueReports(env, now, 4 * 3600)]
    assert got == expected


def test_due_reports_are_made_as_they_are_asked_for():
    env = envelope(state("r0", "failed"), state("r1", "sent"))
    reports = dueReports(env, 10, 4 * 3600)
    kind, [first] = next(reports)
    env.recipients[1].reported = True  # the failure DSN went out, and something reported r1 meanwhile
    assert kind == "failure" and list(reports) == []


def test_null_sender_gets_no_reports_and_its_final_recipients_count_as_reported():
    env = envelope(state("r0", "failed"), state("r1", "sent"), state("r2", "delayed"), sender="")
    assert list(dueReports(env, 10 * DAY, 4 * 3600)) == []
    assert markUnreportable(env) is True and markUnreportable(env) is False
    assert [r.reported for r in env.recipients] == [True, True, False]
    assert not isDone(env)
    env.recipients[2].status = "sent"
    env.recipients[2].reported = True
    assert isDone(env)
