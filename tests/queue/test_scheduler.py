"""
The queue runner in-process: task.Clock for the schedule, lifetime and
delay warning; fake SMTP sessions; a memory store for local delivery.
"""

import email
import email.policy
import json
import os

import pytest
from twisted.internet import defer, task

from mailnet import auth, config as configmod
from mailnet.errors import DeliveryError
from mailnet.queue import workers
from mailnet.queue.admin import QueueAdmin
from mailnet.queue.scheduler import QueueRunner
from mailnet.queue.spool import Spool
from tests.queue.fakes import FakeConnector, MemoryStore, refused, seeded

START = 1_700_000_000.0
MESSAGE = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: test\r\nMessage-ID: <m1@example.test>\r\n\r\nHello\r\n"


def sync(f, *args, **kw):
    return defer.maybeDeferred(f, *args, **kw)


class Env:
    def __init__(self, tmp_path, script=None, dsn=True, slow=0, **sections):
        self.tmp = tmp_path
        raw = {"server": {"hostname": "mx.example.test", "data_dir": str(tmp_path / "data")},
               "domains": {"local": ["example.test"]}}
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        self.config = configmod.fromDict(raw)
        self.clock = task.Clock()
        self.clock.advance(START)
        self.spool = Spool(self.config.spoolDir, runInThread=sync)
        (tmp_path / "users").write_text("alice@example.test:{PLAIN}x\nbob@example.test:{PLAIN}x\n")
        (tmp_path / "aliases").write_text("team@example.test: alice@example.test, bob@example.test\n"
                                          "fwd@example.test: carol@far.test\n")
        users = auth.UserDB(str(tmp_path / "users"), clock=self.clock)
        self.directory = auth.Directory(["example.test"], users, auth.AliasDB(str(tmp_path / "aliases")))
        self.store = MemoryStore()
        self.connector = FakeConnector(self.clock, script=script, dsn=dsn, slow=slow)
        self.runner = None

    def start(self):
        self.runner = QueueRunner(self.spool, self.config, self.clock, self.connector, directory=self.directory,
                                  store=self.store, rng=seeded(), runInThread=sync)
        self.admin = QueueAdmin(self.runner)
        self.runner.start()
        self.settle()
        return self.runner

    def restart(self):
        self.runner.stop()
        self.settle()
        return self.start()

    def queue(self, sender="alice@example.test", rcpts=("bob@remote.test",), data=MESSAGE, **kw):
        recipients = [r if isinstance(r, dict) else {"address": r} for r in rcpts]
        writer = self.spool.newMessage(sender, recipients, arrival=self.clock.seconds(), **kw)
        writer.write(data)
        out = []
        writer.commit().addCallback(out.append)
        self.settle()
        return out[0]

    def settle(self):
        for _ in range(5):
            self.clock.advance(0)

    def advance(self, seconds, step=60):
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step
        self.settle()

    def envelope(self, qid):
        return self.spool.load(qid)

    def box(self, user):
        return self.store.boxes.get(user, [])

    def dsns(self, user="alice@example.test"):
        return [email.message_from_bytes(m, policy=email.policy.default) for m in self.box(user)
                if b"multipart/report" in m]


@pytest.fixture
def make(tmp_path):
    made = []

    def factory(**kw):
        directory = tmp_path / f"e{len(made)}"
        directory.mkdir()
        env = Env(directory, **kw)
        made.append(env)
        return env

    yield factory
    for env in made:
        if env.runner is not None and env.runner.running:
            env.runner.stop()


def statuses(env, qid):
    return {r.address: r.status for r in env.envelope(qid).recipients}


def report_blocks(msg):
    status = [p for p in msg.iter_parts() if p.get_content_type() == "message/delivery-status"][0]
    return status.get_payload()


# -- Delivery ------------------------------------------------------------------


def test_delivered_and_removed(make):
    env = make()
    env.start()
    qid = env.queue()
    assert env.connector.connects == ["remote.test"]
    [(dest, sender, rcpts, data, outcomes)] = env.connector.messages
    assert (dest, sender, rcpts, data) == ("remote.test", "alice@example.test", ["bob@remote.test"], MESSAGE)
    assert not env.spool.exists(qid)
    assert not os.path.exists(env.spool.dataPath(qid))
    assert env.runner.stats["sent"] == 1


def test_recipients_grouped_by_destination(make):
    env = make()
    env.start()
    env.queue(rcpts=["bob@remote.test", "carol@remote.test", "dave@other.test", "bob@example.test"])
    assert sorted(env.connector.connects) == ["other.test", "remote.test"]
    byDest = {m[0]: m[2] for m in env.connector.messages}
    assert byDest == {"remote.test": ["bob@remote.test", "carol@remote.test"], "other.test": ["dave@other.test"]}
    [local] = env.box("bob@example.test")
    assert local == b"Return-Path: <alice@example.test>\r\n" + MESSAGE


def test_several_messages_share_one_connection(make):
    env = make(relay={"max_connections_per_destination": 1})
    env.start()
    for n in range(5):
        env.queue(rcpts=[f"u{n}@remote.test"])
    assert len(env.connector.messages) == 5
    assert env.connector.connects == ["remote.test"]
    [session] = env.connector.sessions
    assert len(session.delivered) == 5


def test_idle_session_reused_then_closed(make):
    env = make()
    env.start()
    env.queue(rcpts=["a@remote.test"])
    env.clock.advance(1)
    env.queue(rcpts=["b@remote.test"])
    assert env.connector.connects == ["remote.test"]  # reused within IDLE_SECONDS
    [session] = env.connector.sessions
    assert session.alive
    env.clock.advance(workers.IDLE_SECONDS + 0.1)
    assert not session.alive and session.quits == 1


def test_messages_per_connection_limit(make):
    env = make(relay={"max_connections_per_destination": 1, "messages_per_connection": 2})
    env.start()
    for n in range(5):
        env.queue(rcpts=[f"u{n}@remote.test"])
    # Queued one at a time, each goes at once over the cached session until
    # the limit, then a new connection.
    assert len(env.connector.connects) == 3
    assert [len(s.delivered) for s in env.connector.sessions] == [2, 2, 1]


def test_backlog_uses_parallel_connections_within_limit(make):
    env = make(slow=1.0, relay={"max_connections_per_destination": 3})
    for n in range(10):
        env.queue(rcpts=[f"u{n}@remote.test"])
    env.start()
    env.advance(30, step=0.5)
    assert len(env.connector.messages) == 10
    assert env.connector.peakPerDestination == 3
    assert len(env.connector.connects) == 3  # each connection carried several


def test_total_connection_limit(make):
    env = make(slow=1.0, relay={"max_connections": 2})
    for n in range(6):
        env.queue(rcpts=[f"u@d{n}.test"])
    env.start()
    env.advance(20, step=0.5)
    assert len(env.connector.messages) == 6
    assert env.connector.peak == 2
    assert env.runner.connections == 0


# -- Temporary failures, lifetime ---------------------------------------------------


def test_temporary_failure_is_retried_on_schedule(make):
    answers = [DeliveryError(451, "4.7.1", "greylisted, try later", True, "mx.remote.test"), None]
    env = make(script=lambda a: answers.pop(0), queue={"delay_warning": 0})
    env.start()
    qid = env.queue()
    e = env.envelope(qid).recipients[0]
    assert e.status == "delayed" and e.attempts == 1
    assert e.last_error == "451 4.7.1 greylisted, try later" and e.remote_mta == "mx.remote.test"
    wait = e.next_attempt - START
    assert 270 <= wait <= 330  # retry_initial 300 +-10%
    env.clock.advance(wait - 1)
    assert len(env.connector.messages) == 1
    env.clock.advance(1)
    env.settle()
    assert len(env.connector.messages) == 2
    assert not env.spool.exists(qid)
    assert env.dsns() == []


def test_refused_connection_defers_whole_destination_with_one_attempt(make):
    env = make()
    env.connector.refuse["remote.test"] = refused()
    env.start()
    ids = [env.queue(rcpts=[f"u{n}@remote.test"]) for n in range(3)]
    assert env.connector.connects.count("remote.test") == 3  # one per arrival, each alone
    env.runner.stop()
    env.connector.connects.clear()
    env.clock.advance(1000)
    env.start()
    # At start all three are due together: one connection attempt for all.
    assert env.connector.connects == ["remote.test"]
    for qid in ids:
        r = env.envelope(qid).recipients[0]
        assert r.status == "delayed" and r.attempts == 2
        assert "connection refused" in r.last_error and r.remote_mta is None


def test_lifetime_bounces_with_last_error(make):
    env = make(script=lambda a: DeliveryError(451, "4.4.1", "mailbox busy", True, "mx.remote.test"),
               queue={"lifetime": 3600, "retry_initial": 600, "retry_max": 1200, "delay_warning": 0})
    env.start()
    qid = env.queue()
    env.advance(3600 + 60)
    assert not env.spool.exists(qid)
    attempts = len(env.connector.messages)
    assert 3 <= attempts <= 6
    [bounce] = env.dsns()
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    [perMessage, block] = report_blocks(bounce)
    assert (block["Action"], block["Status"]) == ("failed", "4.4.1")
    assert block["Diagnostic-Code"] == "smtp; 451 4.4.1 mailbox busy"
    assert "gave up" not in block["Diagnostic-Code"]
    # The last try was at the end of the lifetime exactly, the bounce right after.
    assert env.connector.times[-1] == START + 3600
    assert len(env.dsns()) == 1


def test_delay_warning_once_after_configured_time(make):
    env = make(script=lambda a: DeliveryError(451, "4.4.1", "busy", True, "mx.remote.test"),
               queue={"delay_warning": 4 * 3600, "lifetime": 86400, "retry_initial": 300, "retry_max": 1800})
    env.start()
    qid = env.queue()
    env.advance(4 * 3600 - 600)
    assert env.dsns() == []
    env.advance(1800)
    [warning] = env.dsns()
    assert warning["Subject"] == "Delayed Mail (still being retried)"
    block = report_blocks(warning)[1]
    assert block["Action"] == "delayed"
    assert block["Will-Retry-Until"]
    assert env.envelope(qid).delay_warned is True
    env.advance(6 * 3600)
    assert len(env.dsns()) == 1
    assert env.spool.exists(qid)


@pytest.mark.parametrize("notify, warned", [(None, True), (["DELAY"], True), (["FAILURE"], False), (["NEVER"], False)])
def test_delay_warning_respects_notify(make, notify, warned):
    env = make(script=lambda a: DeliveryError(451, "4.4.1", "busy", True, None),
               queue={"delay_warning": 3600, "retry_initial": 300, "retry_max": 600})
    env.start()
    env.queue(rcpts=[{"address": "bob@remote.test", "notify": notify}])
    env.advance(2 * 3600)
    assert len(env.dsns()) == (1 if warned else 0)


# -- Permanent failures, bounces -------------------------------------------------------


def test_permanent_failure_one_bounce_per_message(make):
    env = make(script=lambda a: DeliveryError(550, "5.1.1", f"<{a}>: no such user", False, "mx.remote.test"))
    env.start()
    qid = env.queue(rcpts=["bob@remote.test", "carol@remote.test", "dave@other.test"], envid="ENV1", ret="FULL")
    assert not env.spool.exists(qid)
    [bounce] = env.dsns()
    assert bounce["To"].addresses[0].addr_spec == "alice@example.test"
    blocks = report_blocks(bounce)
    assert blocks[0]["Original-Envelope-Id"] == "ENV1"
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; bob@remote.test", "rfc822; carol@remote.test", "rfc822; dave@other.test"]
    assert {b["Status"] for b in blocks[1:]} == {"5.1.1"}
    returned = list(bounce.iter_parts())[2]
    assert returned.get_content_type() == "message/rfc822"
    assert returned.get_payload()[0]["Message-ID"] == "<m1@example.test>"
    # The bounce came from the null sender, through the queue, into alice's box.
    raw = env.box("alice@example.test")[0]
    assert raw.startswith(b"Return-Path: <>\r\n")


def test_no_bounce_for_a_bounce(make):
    env = make(script=lambda a: DeliveryError(550, "5.1.1", "no such user", False, "mx.remote.test"))
    env.start()
    qid = env.queue(sender="", rcpts=["bob@remote.test"])
    assert not env.spool.exists(qid)
    assert env.spool.ids() == []
    assert env.store.boxes == {}


def test_notify_never_no_bounce(make):
    env = make(script=lambda a: DeliveryError(550, "5.1.1", "no", False, None))
    env.start()
    env.queue(rcpts=[{"address": "bob@remote.test", "notify": ["NEVER"]}])
    assert env.dsns() == [] and env.spool.ids() == []


def test_no_such_domain_and_null_mx_bounce(make):
    env = make()
    env.connector.refuse["nosuch.test"] = DeliveryError(550, "5.1.2", "domain nosuch.test does not exist", False)
    env.connector.refuse["nullmx.test"] = DeliveryError(556, "5.1.10", "domain nullmx.test accepts no mail (null MX, RFC 7505)", False)
    env.start()
    env.queue(rcpts=["a@nosuch.test", "b@nullmx.test"])
    [bounce] = env.dsns()
    blocks = report_blocks(bounce)[1:]
    assert {(b["Final-Recipient"], b["Status"]) for b in blocks} == {
        ("rfc822; a@nosuch.test", "5.1.2"), ("rfc822; b@nullmx.test", "5.1.10")}
    assert all(b["Diagnostic-Code"].startswith("X-mailnet;") for b in blocks)


def test_mixed_outcomes(make):
    def script(a):
        return None if a.startswith("ok") else DeliveryError(550, "5.7.1", "refused", False, "mx.remote.test")

    env = make(script=script)
    env.start()
    env.queue(rcpts=["ok@remote.test", "no@remote.test"])
    [bounce] = env.dsns()
    assert [b["Final-Recipient"] for b in report_blocks(bounce)[1:]] == ["rfc822; no@remote.test"]


# -- Success notifications ---------------------------------------------------------------


def test_success_dsn_relayed_only_when_peer_lacks_dsn(make):
    for peerDSN, expected in ((True, 0), (False, 1)):
        env = make(dsn=peerDSN)
        env.start()
        env.queue(rcpts=[{"address": "bob@remote.test", "notify": ["SUCCESS"]}])
        dsns = env.dsns()
        assert len(dsns) == expected
        if expected:
            assert report_blocks(dsns[0])[1]["Action"] == "relayed"
        env.runner.stop()


def test_success_dsn_for_local_delivery(make):
    env = make()
    env.start()
    env.queue(sender="alice@example.test",
              rcpts=[{"address": "bob@example.test", "notify": ["SUCCESS", "FAILURE"]}])
    [report] = env.dsns()
    assert report["Subject"] == "Successful Mail Delivery Report"
    assert report_blocks(report)[1]["Action"] == "delivered"


# -- Local recipients ---------------------------------------------------------------------


def test_local_alias_and_unknown_user(make):
    env = make()
    env.start()
    env.queue(sender="someone@remote.test", rcpts=["team@example.test", "nobody@example.test"])
    assert len(env.box("alice@example.test")) == 1 and len(env.box("bob@example.test")) == 1
    # The bounce for nobody@ goes back to the remote sender.
    [(dest, sender, rcpts, data, _)] = env.connector.messages
    assert (dest, sender, rcpts) == ("remote.test", "", ["someone@remote.test"])
    msg = email.message_from_bytes(data, policy=email.policy.default)
    block = report_blocks(msg)[1]
    assert (block["Final-Recipient"], block["Status"]) == ("rfc822; nobody@example.test", "5.1.1")


def test_alias_to_remote_address_is_expanded(make):
    env = make()
    env.start()
    qid = env.queue(rcpts=[{"address": "fwd@example.test", "notify": ["SUCCESS", "FAILURE"]}])
    [(dest, sender, rcpts, data, _)] = [m for m in env.connector.messages if m[1]]
    assert (dest, rcpts) == ("far.test", ["carol@far.test"])
    [report] = env.dsns()
    assert report_blocks(report)[1]["Action"] == "expanded"
    assert not env.spool.exists(qid)


def test_store_failure_is_temporary(make):
    from mailnet.store.interfaces import TemporaryStoreError

    env = make()
    env.store.failWith = TemporaryStoreError("disk full")
    env.start()
    qid = env.queue(rcpts=["bob@example.test"])
    r = env.envelope(qid).recipients[0]
    assert r.status == "delayed" and r.last_error.startswith("451 4.2.0")
    env.store.failWith = None
    env.advance(400)
    assert len(env.box("bob@example.test")) == 1
    assert not env.spool.exists(qid)


# -- Durability, restart ------------------------------------------------------------------


def test_envelope_is_readable_json_on_disk(make):
    env = make(script=lambda a: DeliveryError(451, "4.7.1", "later", True, "mx.remote.test"))
    env.start()
    qid = env.queue(rcpts=[{"address": "bob@remote.test", "notify": ["FAILURE"], "orcpt": "rfc822;bob@remote.test"}],
                    envid="E1", ret="HDRS")
    with open(env.spool.envelopePath(qid), encoding="utf-8") as f:
        text = f.read()
    envelope = json.loads(text)
    assert "\n \"recipients\"" in text  # indented, for people
    assert envelope["sender"] == "alice@example.test" and envelope["envid"] == "E1"
    [r] = envelope["recipients"]
    assert (r["status"], r["attempts"], r["notify"], r["orcpt"]) == ("delayed", 1, ["FAILURE"], "rfc822;bob@remote.test")
    assert os.stat(env.spool.envelopePath(qid)).st_mode & 0o777 == 0o600


def test_restart_never_resends_sent_recipients(make):
    calls = []

    def script(a):
        calls.append(a)
        return None if a == "sent@remote.test" else DeliveryError(451, "4.0.0", "later", True, None)

    env = make(script=script)
    env.start()
    qid = env.queue(rcpts=["sent@remote.test", "later@remote.test"])
    assert statuses(env, qid) == {"sent@remote.test": "sent", "later@remote.test": "delayed"}
    calls.clear()
    env.restart()
    env.advance(400)
    assert calls == ["later@remote.test"]


def test_items_found_at_start(make):
    env = make()
    ids = [env.queue(rcpts=[f"u{n}@remote.test"]) for n in range(3)]  # no runner yet
    assert env.spool.ids() == sorted(ids)
    env.start()
    assert len(env.connector.messages) == 3
    assert env.spool.ids() == []


def test_unreported_failure_found_at_start_is_reported(make):
    env = make()
    qid = env.queue(rcpts=["bob@remote.test"])
    envelope = env.envelope(qid)
    vars(envelope.recipients[0]).update(status="failed", action="failed", last_error="550 5.1.1 no such user",
                                     remote_mta="mx.remote.test", reported=False)
    env.spool.save(envelope)
    env.start()
    assert len(env.dsns()) == 1
    assert not env.spool.exists(qid)


BAD_ENVELOPES = {
    "truncated": lambda text, qid: text[: len(text) // 2],
    "not an object": lambda text, qid: "[1, 2, 3]",
    "recipients as string": lambda text, qid: json.dumps(dict(json.loads(text), recipients="bob@remote.test")),
    "missing status": lambda text, qid: json.dumps(dict(json.loads(text), recipients=[{"address": "bob@remote.test"}])),
    "id is a path": lambda text, qid: json.dumps(dict(json.loads(text), id="../../../x")),
    "bad status": lambda text, qid: text.replace('"pending"', '"sending"'),
    "not utf-8": lambda text, qid: b"\xff\xfe{}",
}


@pytest.mark.parametrize("kind", sorted(BAD_ENVELOPES))
def test_corrupt_envelope_is_set_aside_and_the_rest_delivered(make, kind):
    env = make()
    bad = env.queue(rcpts=["bad@remote.test"])
    good = env.queue(rcpts=["good@remote.test"])
    with open(env.spool.envelopePath(bad), encoding="utf-8") as f:
        text = f.read()
    damaged = BAD_ENVELOPES[kind](text, bad)
    with open(env.spool.envelopePath(bad), "wb") as f:
        f.write(damaged if isinstance(damaged, bytes) else damaged.encode())
    env.start()
    assert [m[2] for m in env.connector.messages] == [["good@remote.test"]]
    assert env.spool.ids() == []
    assert sorted(os.listdir(env.spool.corruptDir)) == [f"{bad}.json", f"{bad}.msg", f"{bad}.reason"]
    [(qid, reason)] = env.admin.corrupt()
    assert qid == bad and reason
    env.runner.rescan()  # never loaded (or logged) again
    assert env.runner.stats["corrupt"] == 1


def test_item_without_message_file_is_set_aside_not_retried(make):
    env = make()
    qid = env.queue()
    os.unlink(env.spool.dataPath(qid))
    env.start()
    env.advance(3600)
    assert env.connector.messages == []
    assert env.admin.corrupt() == [(qid, "the message file (.msg) is missing")]
    assert not env.spool.exists(qid)


def test_message_file_gone_after_loading_is_set_aside_not_retried(make):
    from mailnet.store.interfaces import TemporaryStoreError

    env = make()
    env.store.failWith = TemporaryStoreError("disk full")
    env.start()
    qid = env.queue(rcpts=[{"address": "bob@example.test", "notify": ["SUCCESS"]}])
    assert statuses(env, qid) == {"bob@example.test": "delayed"}
    env.store.failWith = None
    os.unlink(env.spool.dataPath(qid))
    env.advance(400)
    assert env.admin.corrupt() == [(qid, "the message file (.msg) is missing")]
    assert env.runner.items == {} and not env.spool.exists(qid)
    assert os.path.exists(os.path.join(env.spool.corruptDir, qid + ".json"))
    attempts = env.runner.stats["deferred"]
    env.advance(7200)
    assert env.runner.stats["deferred"] == attempts and env.box("bob@example.test") == []


def test_item_added_later_with_bad_envelope_is_set_aside(make):
    from mailnet.queue.spool import newQueueId

    env = make()
    env.start()
    qid = newQueueId()
    with open(env.spool.dataPath(qid), "wb") as f:
        f.write(MESSAGE)
    with open(env.spool.envelopePath(qid), "w") as f:
        json.dump({"version": 1, "sender": "a@example.test", "arrival": START, "recipients": [{"address": 5}]}, f)
    env.runner.added(qid)
    assert env.admin.flush() == 0
    env.settle()
    assert env.connector.messages == [] and env.runner.items == {}
    assert env.admin.corrupt() == [(qid, 'recipient 1: "address" is int, not a string')]


# -- Operator commands ---------------------------------------------------------------------


def test_hold_release_flush_delete(make):
    env = make(script=lambda a: DeliveryError(451, "4.0.0", "later", True, None))
    env.start()
    qid = env.queue()
    env.admin.hold(qid)
    assert env.envelope(qid).held is True
    env.advance(3600)
    assert len(env.connector.messages) == 1  # held: no retry
    assert env.admin.flush() == 0
    env.admin.release(qid)
    assert env.envelope(qid).held is False
    env.settle()
    assert len(env.connector.messages) == 2  # overdue while held: goes at release
    assert env.admin.flush(qid) == 1
    env.settle()
    assert len(env.connector.messages) == 3
    env.admin.delete(qid)
    assert not env.spool.exists(qid) and qid not in env.runner.items
    with pytest.raises(KeyError):
        env.admin.get(qid)


def test_delete_while_in_flight(make):
    env = make(slow=5)
    env.start()
    qid = env.queue()
    assert env.runner.items[qid].inflight
    env.admin.delete(qid)
    env.advance(10, step=1)
    assert not env.spool.exists(qid)
    assert env.dsns() == []


def test_stop_waits_for_running_transaction(make):
    env = make(slow=3)
    env.start()
    qid = env.queue()
    stopped = []
    env.runner.stop().addCallback(stopped.append)
    assert not stopped
    env.advance(3, step=1)
    assert stopped
    assert not env.spool.exists(qid)


def test_local_delivery_through_the_real_memory_store(make):
    from mailnet.store.memory import MemoryStore as RealMemoryStore

    env = make(script=lambda a: DeliveryError(550, "5.1.1", "no such user", False, "mx.remote.test"))
    env.store = RealMemoryStore()
    env.start()
    env.queue(rcpts=["bob@remote.test"])  # bounces to alice@example.test, a local user

    account = []
    env.store.getAccount("alice@example.test").addCallback(account.append)
    folder = []
    account[0].openFolder("INBOX").addCallback(folder.append)
    [info] = folder[0].messages()
    f = []
    folder[0].openMessage(info.uid).addCallback(f.append)
    raw = f[0].read()
    assert raw.startswith(b"Return-Path: <>\r\n")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert info.internalDate == pytest.approx(START)
