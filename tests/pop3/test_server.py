"""The Twisted protocol in process: StringTransport, MemoryStore, task.Clock."""

import pytest
from twisted.internet import defer, task

from mailnet.store.interfaces import SEEN
from tests.pop3.helpers import Client, Transport, deliver, makeContext
from tests.store.helpers import result

ALICE = "alice@example.test"
MSG1 = b"From: bob@example.test\r\nSubject: one\r\n\r\nHello\r\n.dot line\r\n"
MSG2 = b"From: bob@example.test\r\nSubject: two\r\n\r\n" + b"line\r\n" * 10


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def ctx(tmp_path, clock):
    return makeContext(tmp_path, clock)


@pytest.fixture
def uids(ctx):
    return [deliver(ctx.store, ALICE, MSG1), deliver(ctx.store, ALICE, MSG2)]


def inbox(ctx, user=ALICE):
    account = result(ctx.store.getAccount(user))
    return result(account.openFolder("INBOX"))


def test_greeting_and_refusal_constant():
    from mailnet.pop3 import server

    assert server.REFUSAL == b"-ERR [SYS/TEMP] Too many connections\r\n"


def test_plaintext_login_refused_on_pop3_until_stls(ctx, uids):
    c = Client(ctx, "pop3")
    assert c.greeting == b"+OK mx.example.test POP3 server ready\r\n"
    assert c.cmd("USER alice@example.test").startswith(b"-ERR [AUTH] Plaintext")
    assert c.plain(ALICE, "alice-pw").startswith(b"-ERR [AUTH] Plaintext")
    assert b"STLS" in c.cmd("CAPA")
    assert c.cmd("STLS") == b"+OK Begin TLS negotiation\r\n"
    assert c.transport.tls is ctx.tlsOptions
    assert b"STLS" not in c.cmd("CAPA")
    assert c.login() .endswith(b"+OK Logged in; 2 messages (%d octets)\r\n" % (len(MSG1) + len(MSG2)))


def test_stls_injection_is_not_executed(ctx, uids):
    ctx.config = ctx.config.replace(auth={"allow_plaintext": True})
    c = Client(ctx, "pop3")
    # Everything after STLS in the same packet must be dropped.
    out = c.send(b"STLS\r\nUSER alice@example.test\r\nPASS alice-pw\r\nDELE 1\r\nQUIT\r\n")
    assert out == b"+OK Begin TLS negotiation\r\n"
    assert c.transport.tls is not None
    assert c.cmd("PASS alice-pw") == b"-ERR Send USER first\r\n"
    assert len(inbox(ctx).messages()) == 2


def test_allow_plaintext(tmp_path, clock):
    ctx = makeContext(tmp_path, clock, auth={"allow_plaintext": True})
    c = Client(ctx, "pop3")
    assert c.login().endswith(b"+OK Logged in; 0 messages (0 octets)\r\n")


def test_retr_top_list_uidl(ctx, uids):
    c = Client(ctx)
    c.login()
    assert c.cmd("STAT") == b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2))
    folder = inbox(ctx)
    v = folder.uidValidity
    assert c.cmd("UIDL") == b"+OK 2 messages (%d octets)\r\n1 %08x%08x\r\n2 %08x%08x\r\n.\r\n" % (
        len(MSG1) + len(MSG2), uids[0], v, uids[1], v)
    assert c.cmd("RETR 1") == b"+OK %d octets\r\n" % len(MSG1) + MSG1.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert c.cmd("TOP 2 3") == b"+OK Top of message follows\r\n" + MSG2[: MSG2.index(b"\r\n\r\n") + 4] + b"line\r\n" * 3 + b".\r\n"
    assert c.cmd("TOP 2 0").endswith(b"Subject: two\r\n\r\n.\r\n")


def test_retr_marks_seen_top_does_not(ctx, uids):
    c = Client(ctx)
    c.login()
    c.cmd("TOP 1 0")
    assert SEEN not in inbox(ctx).get(uids[0]).flags
    c.cmd("RETR 2")
    assert SEEN in inbox(ctx).get(uids[1]).flags
    assert SEEN not in inbox(ctx).get(uids[0]).flags


def test_dele_quit_removes(ctx, uids):
    c = Client(ctx)
    c.login()
    assert c.cmd("DELE 1") == b"+OK Message 1 deleted\r\n"
    assert c.cmd("QUIT") == b"+OK Bye; 1 messages deleted, 1 left\r\n"
    assert c.closed
    c.drop()
    assert [i.uid for i in inbox(ctx).messages()] == [uids[1]]


@pytest.mark.parametrize("how", ["drop", "timeout"])
def test_no_quit_no_delete(ctx, clock, uids, how):
    c = Client(ctx)
    c.login()
    c.cmd("DELE 1")
    c.cmd("DELE 2")
    if how == "timeout":
        clock.advance(599)
        assert not c.closed
        clock.advance(1)
        assert c.take() == b"-ERR Disconnected for inactivity\r\n"
        assert c.closed
    c.drop()
    assert len(inbox(ctx).messages()) == 2
    # And the lock is free again.
    assert Client(ctx).login().startswith(b"+OK")


def test_timeout_is_reset_by_commands(ctx, clock):
    c = Client(ctx)
    c.login()  # before login, the login deadline applies (test_deadlines.py)
    clock.advance(500)
    c.cmd("NOOP")
    clock.advance(500)
    assert not c.closed
    clock.advance(100)
    assert c.closed


def test_lock(ctx, uids):
    first = Client(ctx)
    first.login()
    second = Client(ctx)
    assert second.login().endswith(b"-ERR [IN-USE] Mailbox is in use by another POP3 session\r\n")
    assert Client(ctx).login("bob@example.test").endswith(b"+OK Logged in; 0 messages (0 octets)\r\n")
    first.cmd("QUIT")
    first.drop()
    assert second.login().startswith(b"+OK")


def test_lock_is_shared_between_listeners(ctx, tmp_path):
    ctx.config = ctx.config.replace(auth={"allow_plaintext": True})
    Client(ctx, "pop3s").login()
    assert b"[IN-USE]" in Client(ctx, "pop3").login()


def test_failed_login_waits_and_closes_after_the_limit(ctx, clock):
    c = Client(ctx)
    for attempt in range(1, 5):
        assert c.login(password="wrong") == b"+OK Send PASS\r\n"
        delay = 1.0 * 2 ** (attempt - 1)
        clock.advance(delay - 0.01)
        assert c.take() == b""
        clock.advance(0.01)
        assert c.take() == b"-ERR [AUTH] Authentication failed\r\n"
    c.login(password="wrong")
    clock.advance(30)
    assert c.take().startswith(b"-ERR [AUTH] Authentication failed; too many failures")
    assert c.closed


def test_auth_plain(ctx, uids):
    c = Client(ctx)
    assert c.plain(ALICE, "alice-pw").startswith(b"+OK Logged in; 2 messages")


def test_auth_plain_authzid_must_match(ctx, clock):
    import base64

    c = Client(ctx)
    c.cmd("AUTH PLAIN " + base64.b64encode(b"bob@example.test\0alice@example.test\0alice-pw").decode())
    clock.advance(1)
    assert c.take() == b"-ERR [AUTH] Authentication failed\r\n"


def test_pipelined_commands_answer_in_order(ctx, uids):
    c = Client(ctx)
    out = c.send(b"USER alice@example.test\r\nPASS alice-pw\r\nSTAT\r\nLIST 2\r\nRETR 1\r\nDELE 2\r\nNOOP\r\n")
    expected = (b"+OK Send PASS\r\n" + b"+OK Logged in; 2 messages (%d octets)\r\n" % (len(MSG1) + len(MSG2))
                + b"+OK 2 %d\r\n" % (len(MSG1) + len(MSG2)) + b"+OK 2 %d\r\n" % len(MSG2)
                + b"+OK %d octets\r\n" % len(MSG1) + MSG1.replace(b"\r\n.", b"\r\n..") + b".\r\n"
                + b"+OK Message 2 deleted\r\n+OK\r\n")
    assert out == expected


def test_slow_login_holds_later_commands(ctx, uids):
    """Commands pipelined behind PASS wait for the password check."""
    pending = defer.Deferred()
    original = ctx.portal.login
    ctx.portal.login = lambda *a: pending.addCallback(lambda _: original(*a)) and pending
    c = Client(ctx)
    assert c.send(b"USER alice@example.test\r\nPASS alice-pw\r\nSTAT\r\n") == b"+OK Send PASS\r\n"
    pending.callback(None)
    assert c.take() == b"+OK Logged in; 2 messages (%d octets)\r\n+OK 2 %d\r\n" % ((len(MSG1) + len(MSG2),) * 2)


def test_message_expunged_by_another_client(ctx, uids):
    c = Client(ctx)
    c.login()
    other = inbox(ctx)
    result(other.expunge([uids[0]]))
    assert c.cmd("RETR 1") == b"-ERR Message 1 was removed by another client\r\n"
    assert c.cmd("STAT") == b"+OK 1 %d\r\n" % len(MSG2)
    assert c.cmd("RETR 2").startswith(b"+OK %d octets" % len(MSG2))
    assert c.cmd("DELE 2") == b"+OK Message 2 deleted\r\n"
    assert c.cmd("QUIT") == b"+OK Bye; 1 messages deleted, 0 left\r\n"
    assert inbox(ctx).messages() == []


def test_message_gone_without_notice(ctx, uids):
    """Another program removed the file: openMessage fails NoSuchMessage."""
    c = Client(ctx)
    c.login()
    index = inbox(ctx)._index
    del index.bodies[uids[1]]
    assert c.cmd("RETR 2") == b"-ERR Message 2 was removed by another client\r\n"
    assert c.cmd("RETR 1").startswith(b"+OK")


def test_new_mail_during_session_is_not_shown(ctx, uids):
    c = Client(ctx)
    c.login()
    deliver(ctx.store, ALICE, MSG1)
    assert c.cmd("STAT").startswith(b"+OK 2 ")
    assert c.cmd("RETR 3").startswith(b"-ERR No such message")


def test_overlong_line(ctx, uids):
    c = Client(ctx)
    c.login()
    assert c.send(b"LIST " + b"1" * 300 + b"\r\nSTAT\r\n") == (
        b"-ERR Command line too long (limit 255 octets, RFC 2449 s4)\r\n+OK 2 %d\r\n" % (len(MSG1) + len(MSG2)))
    # Without a line end at all, the server drops the bytes as they come.
    c.send(b"X" * 100000)
    assert len(c.proto.buffer) == 0
    assert c.send(b"\r\nNOOP\r\n") == b"-ERR Command line too long (limit 255 octets, RFC 2449 s4)\r\n+OK\r\n"


def test_large_message_is_streamed_with_flat_memory(ctx):
    body = b"Subject: big\r\n\r\n" + (b"." + b"x" * 98 + b"\r\n") * 50000  # 5 MB, every line dot-stuffed
    deliver(ctx.store, ALICE, body)
    transport = Transport(pauseAbove=100000)
    c = Client(ctx, transport=transport)
    c.login()
    c.cmd("NOOP")
    c.proto.dataReceived(b"RETR 1\r\nNOOP\r\n")
    received = [transport.drain()]
    while c.proto.sender is not None:
        received.append(transport.drain())
    received.append(transport.drain())
    assert len(received) > 30  # it really was paused and resumed
    data = b"".join(received)
    assert transport.highWater < 100000 + 2 * 70000
    assert data.startswith(b"+OK %d octets\r\n" % len(body))
    assert data.endswith(b"\r\n.\r\n+OK\r\n")
    payload = data[data.index(b"\r\n") + 2: -len(b".\r\n+OK\r\n")]
    assert payload == body.replace(b"\r\n.", b"\r\n..")


def test_pipelined_small_retrs_wait_for_a_slow_reader(ctx):
    """A client that pipelines RETRs and does not read gets at most about INLINE_BUDGET ahead."""
    from mailnet.pop3 import runner

    bodies = [b"Subject: %d\r\n\r\n" % i + (b"%d " % i) * 10000 + b"\r\n" for i in range(80)]  # 20-40 KB
    for body in bodies:
        deliver(ctx.store, ALICE, body)
    transport = Transport(pauseAbove=100000)
    c = Client(ctx, transport=transport)
    c.login()
    c.cmd("NOOP")
    c.proto.dataReceived(b"".join(b"RETR %d\r\n" % (i + 1) for i in range(len(bodies))) + b"NOOP\r\n")
    received = [transport.drain()]
    assert transport.highWater < runner.INLINE_BUDGET + 2 * runner.CHUNK
    while not received[-1].endswith(b"\r\n.\r\n+OK\r\n"):
        received.append(transport.drain())
        assert received[-1], "stalled"
    assert len(received) > 2  # it really had to wait
    assert transport.highWater < runner.INLINE_BUDGET + 2 * runner.CHUNK
    assert b"".join(received) == b"".join(
        b"+OK %d octets\r\n" % len(b) + b + b".\r\n" for b in bodies) + b"+OK\r\n"


def test_connection_lost_while_streaming(ctx, uids):
    body = b"Subject: big\r\n\r\n" + b"y" * 1000000 + b"\r\n"
    deliver(ctx.store, ALICE, body)
    transport = Transport(pauseAbove=100000)
    c = Client(ctx, transport=transport)
    c.login()
    c.proto.dataReceived(b"DELE 1\r\nRETR 3\r\n")
    assert c.proto.sender is not None
    c.drop()
    assert c.proto.sender is None
    assert len(inbox(ctx).messages()) == 3
    assert Client(ctx).login().startswith(b"+OK")


def test_expunge_failure(ctx, uids, monkeypatch):
    c = Client(ctx)
    c.login()
    monkeypatch.setattr(c.proto.folder, "expunge", lambda uids: defer.fail(OSError("disk on fire")))
    c.cmd("DELE 1")
    assert c.cmd("QUIT").startswith(b"-ERR [SYS/TEMP] Some deleted messages were not removed")
    assert c.closed


def test_store_failure_at_login(ctx, monkeypatch):
    from mailnet.store.interfaces import TemporaryStoreError

    c = Client(ctx)
    account = result(ctx.store.getAccount(ALICE))
    monkeypatch.setattr(type(account), "openFolder", lambda self, name: defer.fail(TemporaryStoreError("busy")))
    assert c.login().endswith(b"-ERR [SYS/TEMP] Cannot open the mailbox now; try again later\r\n")
    monkeypatch.undo()
    # The lock was given back.
    assert c.login().endswith(b"+OK Logged in; 0 messages (0 octets)\r\n")


def test_quit_waits_for_seen_flags_then_expunges(ctx, uids, monkeypatch):
    """A \\Seen update still in flight is finished before UPDATE."""
    c = Client(ctx)
    c.login()
    folder = c.proto.folder
    pending = defer.Deferred()
    real = folder.setFlags
    calls = []

    def slow(uids, flags, mode="set"):
        calls.append(list(uids))
        return pending.addCallback(lambda _: result(real(uids, flags, mode)))

    monkeypatch.setattr(folder, "setFlags", slow)
    c.cmd("RETR 1")
    c.cmd("RETR 2")
    assert calls == [[uids[0]]]
    c.cmd("DELE 1")
    assert c.cmd("QUIT") == b""
    pending.callback(None)
    assert calls == [[uids[0]], [uids[1]]]
    assert c.take() == b"+OK Bye; 1 messages deleted, 1 left\r\n"
    [left] = inbox(ctx).messages()
    assert left.uid == uids[1] and SEEN in left.flags


def test_store_failure_in_the_realm(ctx, monkeypatch):
    from mailnet.store.interfaces import TemporaryStoreError

    monkeypatch.setattr(ctx.store, "getAccount", lambda *a, **kw: defer.fail(TemporaryStoreError("down")))
    c = Client(ctx)
    assert c.login().endswith(b"-ERR [SYS/TEMP] Cannot open the mailbox now; try again later\r\n")
    assert not c.closed
    assert c.proto.session.authFailures == 0


def test_no_secrets_or_bodies_in_logs_even_at_debug(ctx, uids):
    import base64

    from twisted.logger import formatEvent, globalLogPublisher

    from mailnet import logs

    events = []
    globalLogPublisher.addObserver(events.append)
    logs.setLevel("debug")
    try:
        c = Client(ctx)
        c.login()
        c.cmd("RETR 1")
        c.cmd("QUIT")
        c2 = Client(ctx)
        c2.cmd("AUTH PLAIN")
        c2.cmd(base64.b64encode(b"\0bob@example.test\0bob-pw").decode())
        c2.cmd("USER alice@example.test")
        c2.cmd("PASS wrong-secret")
    finally:
        logs.setLevel("info")
        globalLogPublisher.removeObserver(events.append)
    text = "\n".join(formatEvent(e) for e in events)
    assert "C: STAT" in text or "C: RETR 1" in text  # debug dialogue is there
    for secret in ("alice-pw", "bob-pw", "wrong-secret", base64.b64encode(b"\0bob@example.test\0bob-pw").decode(),
                   "Hello", ".dot line"):
        assert secret not in text


def test_pipelined_retrs_are_opened_ahead_and_answered_in_order(ctx, uids, monkeypatch):
    import io

    c = Client(ctx)
    c.login()
    folder = c.proto.folder
    opens = {}

    def openMessage(uid):
        d = opens[uid] = defer.Deferred()
        return d

    monkeypatch.setattr(folder, "openMessage", openMessage)
    c.proto.dataReceived(b"RETR 1\r\nDELE 1\r\nRETR 2\r\nNOOP\r\n")
    assert sorted(opens) == sorted(uids)  # both opened at once
    opens[uids[1]].callback(io.BytesIO(MSG2))
    assert c.take() == b""  # message 2 waits for message 1
    opens[uids[0]].callback(io.BytesIO(MSG1))
    assert c.take() == (b"+OK %d octets\r\n" % len(MSG1) + MSG1.replace(b"\r\n.", b"\r\n..") + b".\r\n"
                        + b"+OK Message 1 deleted\r\n"
                        + b"+OK %d octets\r\n" % len(MSG2) + MSG2 + b".\r\n+OK\r\n")


def test_files_opened_ahead_are_closed(ctx, uids, monkeypatch):
    import io

    c = Client(ctx)
    c.login()
    files = []
    monkeypatch.setattr(c.proto.folder, "openMessage", lambda uid: defer.succeed(files.append(io.BytesIO(MSG1)) or files[-1]))
    out = c.send(b"RETR 1\r\nDELE 2\r\nRETR 2\r\n")  # message 2 is opened ahead, then refused
    assert out.endswith(b"+OK Message 2 deleted\r\n-ERR Message 2 is already deleted\r\n")
    assert len(files) == 2
    c.drop()
    assert all(f.closed for f in files)


def test_seen_marks_batched_during_a_flush_survive_a_drop(ctx, uids, monkeypatch):
    c = Client(ctx)
    c.login()
    folder = c.proto.folder
    pending = defer.Deferred()
    real = folder.setFlags
    closed = []
    monkeypatch.setattr(folder, "setFlags", lambda u, f, mode="set": pending.addCallback(lambda _: result(real(u, f, mode))))
    monkeypatch.setattr(folder, "close", lambda: closed.append(True))
    c.cmd("RETR 1")
    c.cmd("RETR 2")  # batched behind the first update
    c.drop()
    assert not closed  # the handle stays open for the updates
    pending.callback(None)
    assert closed
    assert all(SEEN in info.flags for info in inbox(ctx).messages())
