"""
The queue's local delivery and the quota (docs/smtp.md "Quota"): a full
mailbox is a temporary failure (452 4.2.2: retried, delivered once there is
room), a message larger than the whole quota a permanent one (552 5.2.2: a
DSN at once); nothing is dropped.
"""

from __future__ import annotations

import email
import email.policy

from mailnet.store.memory import MemoryStore
from mailnet.store.quota import QuotaPolicy
from mailnet.store.testing import result
import pytest

from tests.queue.test_scheduler import MESSAGE, Env, report_blocks

BOB = "bob@example.test"


@pytest.fixture
def make(tmp_path):
    """tests/queue/test_scheduler.py's environment (clock, spool, fake connector) over a real MemoryStore."""
    made = []

    def factory(**kw):
        env = Env(tmp_path, **kw)
        env.store = MemoryStore()
        made.append(env)
        return env

    yield factory
    for env in made:
        if env.runner is not None and env.runner.running:
            env.runner.stop()


def _bobs(env):
    account = result(env.store.getAccount(BOB))
    folder = result(account.openFolder("INBOX"))
    try:
        return len(folder.messages())
    finally:
        folder.close()


def _fill(store, user, size):
    d = store.newDelivery()
    d.addRecipient(user)
    d.write(b"Subject: filler\r\n\r\n" + b"x" * size + b"\r\n")
    result(d.commit())


def test_full_mailbox_is_retried_then_delivered(make):
    env = make()
    env.store.quotaPolicy = QuotaPolicy(storage=1000, grace=0)
    _fill(env.store, BOB, 990)
    env.start()
    qid = env.queue(rcpts=[BOB])
    r = env.envelope(qid).recipients[0]
    assert r.status == "delayed" and r.last_error.startswith("452 4.2.2"), r.last_error
    assert _bobs(env) == 1
    # Room again (the user deleted mail, or the administrator raised the limit).
    env.store.quotaPolicy = QuotaPolicy(storage=100_000, grace=0)
    env.advance(400)
    assert _bobs(env) == 2
    assert not env.spool.exists(qid)


def test_message_larger_than_the_quota_bounces_at_once(make):
    env = make()
    env.store.quotaPolicy = QuotaPolicy(storage=len(MESSAGE) // 2)
    env.start()
    qid = env.queue(sender="someone@remote.test", rcpts=[BOB])
    assert not env.spool.exists(qid)
    [(dest, sender, rcpts, data, _)] = env.connector.messages
    assert (dest, sender, rcpts) == ("remote.test", "", ["someone@remote.test"])
    block = report_blocks(email.message_from_bytes(data, policy=email.policy.default))[1]
    assert (block["Final-Recipient"], block["Status"]) == ("rfc822; bob@example.test", "5.2.2")
