"""
The reports the queue makes itself (RFC 3464 DSNs: failures, successes,
and delay warnings) come from MAILER-DAEMON@<hostname>, our domain: they
are DKIM-signed with the domain's key when it has one, once, before they
are spooled (issue 16).  In process (task.Clock, fake sessions), verified
with dkimpy against the key's published record.
"""

from __future__ import annotations

import pytest

from mailnet.errors import DeliveryError
from mailnet.mailauth import dkimcheck, keys
from tests.queue.test_scheduler import Env

BUSY = lambda address: DeliveryError(451, "4.4.1", "busy", True, "mx.remote.test")  # noqa: E731
GONE = lambda address: DeliveryError(550, "5.1.1", "no such user", False, "mx.remote.test")  # noqa: E731


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(**kw):
        directory = tmp_path / f"e{len(made)}"
        directory.mkdir()
        made.append(Env(directory, **kw))
        return made[-1]
    yield factory
    for env in made:
        if env.runner is not None and env.runner.running:
            env.runner.stop()


def withKey(env, domain="example.test", algorithms=("rsa",)):
    answers = {}
    for algorithm in algorithms:
        keys.make(env.config.server.data_dir, domain, f"s{algorithm}", algorithm)
    for key in keys.loadAll(env.config.server.data_dir)[domain]:
        public = keys.publicKey(key.algorithm, key.private)
        answers[f"{key.selector}._domainkey.{domain}"] = [keys.txtValue(key.algorithm, public).encode()]
    return answers


def signatures(message: bytes) -> list:
    """The DKIM-Signature fields, unfolded."""
    head = message.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"dkim-signature:")]


def raw(env, user="alice@example.test"):
    return [m for m in env.box(user) if b"multipart/report" in m]


def test_failure_dsn_is_signed_once_and_verifies(make):
    env = make(script=GONE)
    answers = withKey(env)
    env.start()
    env.queue()
    [report] = raw(env)
    [field] = signatures(report)
    assert b"d=example.test" in field and b"s=srsa" in field
    assert b"From: Mail Delivery System <MAILER-DAEMON@mx.example.test>" in report
    [result] = dkimcheck.verifyAll(report, answers)
    assert (result.result, result.domain) == ("pass", "example.test"), result


def test_delay_warning_is_signed_with_both_keys(make):
    env = make(script=BUSY, queue={"delay_warning": 4 * 3600, "lifetime": 86400, "retry_initial": 300,
                                   "retry_max": 1800})
    answers = withKey(env, algorithms=("rsa", "ed25519"))
    env.start()
    env.queue()
    env.advance(4 * 3600 + 1200)
    [warning] = raw(env)
    assert b"Delayed Mail" in warning and len(signatures(warning)) == 2
    assert [r.result for r in dkimcheck.verifyAll(warning, answers)] == ["pass", "pass"]


def test_report_to_a_remote_sender_is_spooled_signed_and_retried_unchanged(make):
    env = make(script=lambda address: GONE(address) if address == "bob@remote.test" else BUSY(address))
    answers = withKey(env)
    env.start()
    qid = env.queue(sender="carol@far.test")
    [dsnId] = [i for i in env.spool.ids() if i != qid]
    with env.spool.openData(dsnId) as f:
        spooled = f.read()
    assert len(signatures(spooled)) == 1
    assert dkimcheck.verifyAll(spooled, answers)[0].result == "pass"
    env.advance(3 * 3600)  # retries to far.test: the same signed bytes, not signed again
    with env.spool.openData(dsnId) as f:
        assert f.read() == spooled
    assert env.connector.times, "the DSN was retried"


@pytest.mark.parametrize("case", ["no key", "sign off", "key of another domain"])
def test_unsigned_without_a_key_of_ours_or_with_signing_off(make, case):
    env = make(script=GONE, **({"mailauth": {"sign": False}} if case == "sign off" else {}))
    if case != "no key":
        withKey(env, domain="other.test" if case == "key of another domain" else "example.test")
    env.start()
    env.queue()
    [report] = raw(env)
    assert signatures(report) == []
