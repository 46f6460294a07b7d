"""The Twisted protocol in process: StringTransport, task.Clock, the memory
store and a real spool, so that ordering, durability waits, timeouts and the
STARTTLS switch are checked without sockets."""

import json
import re

import pytest
from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mailnet import config, service
from mailnet.smtp import server
from mailnet.store.interfaces import IDelivery, IMailStore, TemporaryStoreError
from mailnet.store.memory import MemoryStore
from tests.smtp.helpers import plain


@implementer(ICredentialsChecker)
class SyncChecker:
    """Answers at once (the real UserDB checks in a thread)."""

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, users):
        self.users = users

    def requestAvatarId(self, creds):
        # twisted.cred gives checkers bytes
        if self.users.get(creds.username.decode()) == creds.password.decode():
            return defer.succeed(creds.username)
        return defer.fail(error.UnauthorizedLogin())


class TLSStringTransport(StringTransport):
    """StringTransport that records startTLS (and what was written before it)."""

    tlsStartedAfter = None

    def startTLS(self, options):
        self.tlsStartedAfter = self.value()


@pytest.fixture
def clock(monkeypatch):
    # the spool commits in a thread; here it runs at once, without a reactor
    from mailnet.queue import spool

    monkeypatch.setattr(spool.threads, "deferToThread", lambda f, *a, **kw: defer.maybeDeferred(f, *a, **kw))
    return task.Clock()


def makeContext(tmp_path, clock, store=None, **sections):
    raw = {
        "server": {"hostname": "mx.example.test", "data_dir": str(tmp_path / "data")},
        "domains": {"local": ["example.test"]},
        "auth": {"failure_delay": 1.0},
    }
    for key, values in sections.items():
        raw.setdefault(key, {}).update(values)
    conf = config.fromDict(raw, source="<test>")
    checker = SyncChecker({"alice@example.test": "alice-pw"})
    context = service.MailContext(conf, reactor=clock, store=store or MemoryStore(), checkers=[checker])
    # the directory only needs the names (passwords are checked by SyncChecker)
    with open(conf.usersFile, "w") as f:
        f.write("alice@example.test:{PLAIN}alice-pw\nbob@example.test:{PLAIN}bob-pw\n")
    return context


class Client:
    def __init__(self, context, listener="smtp"):
        self.factory = server.makeService(context).factory(listener)
        self.proto = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 5000))
        self.transport = TLSStringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 5000))
        self.proto.makeConnection(self.transport)

    def send(self, data):
        self.proto.dataReceived(data)
        return self.read()

    def read(self):
        value = self.transport.value()
        self.transport.clear()
        return value


@pytest.fixture
def context(tmp_path, clock):
    return makeContext(tmp_path, clock)


def mailbox(context, user):
    account = context.store.getAccount(user, create=True)
    folder = []
    account.addCallback(lambda a: a.openFolder("INBOX")).addCallback(folder.append)
    handle = folder[0]
    out = []
    for info in handle.messages():
        handle.openMessage(info.uid).addCallback(lambda f: out.append(f.read()))
    return out


def test_greeting_and_transaction_stored(context):
    c = Client(context)
    assert c.read() == b"220 mx.example.test ESMTP mailnet\r\n"
    out = c.send(b"EHLO client.example\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
                 b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert out.count(b"\r\n250 ") == 4 and out.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    out = c.send(b"Subject: t\r\n\r\n..x\r\n.\r\n")
    assert out.startswith(b"250 2.0.0 OK id ")
    for user in ("alice@example.test", "bob@example.test"):
        (message,) = mailbox(context, user)
        assert message.startswith(b"Return-Path: <x@remote.example>\r\nReceived: from client.example ([192.0.2.7])\r\n"
                                  b"\tby mx.example.test (mailnet) with ESMTP id ")
        assert message.endswith(b";" + message.split(b";")[-1])
        assert message.endswith(b"\r\nSubject: t\r\n\r\n.x\r\n")
        assert b"\tfor <" not in message  # two recipients: no "for"


def test_single_recipient_received_has_for(context):
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<Bob@example.test>\r\nDATA\r\n")
    c.send(b"x\r\n.\r\n")
    (message,) = mailbox(context, "bob@example.test")
    assert b"\tfor <Bob@example.test>; " in message
    assert message.startswith(b"Return-Path: <>\r\n")


@implementer(IMailStore)
class SlowStore(MemoryStore):
    """A memory store whose commits wait until the test fires them."""

    def __init__(self, fail=False):
        super().__init__()
        self.pending = []
        self.fail = fail

    def newDelivery(self):
        real = super().newDelivery()
        store = self

        @implementer(IDelivery)
        class Delivery:
            addRecipient = real.addRecipient
            write = real.write
            abort = real.abort

            def commit(self, internalDate=None, flags=()):
                d = defer.Deferred()
                if store.fail:
                    store.pending.append(lambda: (real.abort(), d.errback(TemporaryStoreError("disk full"))))
                else:
                    store.pending.append(lambda: real.commit().chainDeferred(d))
                return d

        return Delivery()

    def release(self):
        pending, self.pending = self.pending, []
        for fire in pending:
            fire()


def test_250_only_after_the_store_is_durable(tmp_path, clock):
    store = SlowStore()
    context = makeContext(tmp_path, clock, store=store)
    c = Client(context)
    c.read()
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert c.send(b"x\r\n.\r\nNOOP\r\n") == b""
    assert mailbox(context, "bob@example.test") == []
    store.release()
    out = c.read()
    assert out.startswith(b"250 2.0.0 OK id ") and out.endswith(b"\r\n250 2.0.0 OK\r\n")
    assert len(mailbox(context, "bob@example.test")) == 1


def test_store_failure_gives_451_and_nothing_visible(tmp_path, clock):
    store = SlowStore(fail=True)
    context = makeContext(tmp_path, clock, store=store)
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    c.send(b"x\r\n.\r\n")
    store.release()
    assert c.read() == b"451 4.3.0 Error storing the message; try again later\r\n"
    assert mailbox(context, "bob@example.test") == []


def test_failed_store_aborts_the_spool_item(tmp_path, clock):
    store = SlowStore(fail=True)
    context = makeContext(tmp_path, clock, store=store)
    context.aliases.add("both@example.test", ["bob@example.test", "far@remote.example"])
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<both@example.test>\r\nDATA\r\n")
    c.send(b"x\r\n.\r\n")
    store.release()
    assert c.read().startswith(b"451 ")
    assert context.spool.ids() == []
    assert __import__("os").listdir(context.spool.tmpDir) == []


def test_remote_recipients_go_to_the_spool_once(tmp_path, clock):
    context = makeContext(tmp_path, clock, store=MemoryStore())
    c = Client(context, "submissions")
    c.read()
    out = c.send(f"EHLO c\r\nAUTH PLAIN {plain('alice@example.test', 'alice-pw')}\r\n".encode())
    assert out.endswith(b"235 2.7.0 Authentication successful\r\n")
    out = c.send(b"MAIL FROM:<alice@example.test> RET=HDRS ENVID=e+2B1 SMTPUTF8 BODY=8BITMIME\r\n"
                 b"RCPT TO:<Far@Remote.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;far+40remote.example\r\n"
                 b"RCPT TO:<other@elsewhere.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert out.count(b"250 ") == 4
    assert c.send("Subject: é\r\n\r\nbody\r\n.\r\n".encode()).startswith(b"250 2.0.0 OK")
    (queueId,) = context.spool.ids()
    envelope = context.spool.load(queueId).toDict()
    assert envelope["sender"] == "alice@example.test"
    assert (envelope["ret"], envelope["envid"], envelope["smtputf8"], envelope["body"]) == ("HDRS", "e+2B1", True, "8BITMIME")
    assert envelope["auth"] == "alice@example.test" and envelope["client"] == "c [192.0.2.7]"
    assert [(r["address"], r["orcpt"], r["notify"]) for r in envelope["recipients"]] == [
        ("Far@remote.example", "rfc822;far+40remote.example", ["FAILURE", "DELAY"]),
        ("other@elsewhere.example", None, None)]
    with open(context.spool.dataPath(queueId), "rb") as f:
        data = f.read()
    assert data.startswith(b"Received: from c ([192.0.2.7])\r\n\tby mx.example.test (mailnet) with UTF8SMTPSA id ")
    assert b"Return-Path" not in data  # only the final delivery adds it
    # RFC 6409 s8.3: the submission server added the missing Date and Message-ID
    assert re.search(rb"\r\nSubject: \xc3\xa9\r\nDate: [^\r]+\r\nMessage-ID: <[^>]+@mx\.example\.test>\r\n\r\nbody\r\n$", data)
    (local,) = mailbox(context, "bob@example.test")
    assert local.startswith(b"Return-Path: <alice@example.test>\r\n")


def test_alias_to_remote_target_carries_orcpt(tmp_path, clock):
    context = makeContext(tmp_path, clock)
    context.aliases.add("fwd@example.test", ["far@remote.example"])
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<fwd@example.test>\r\nDATA\r\n")
    assert c.send(b"x\r\n.\r\n").startswith(b"250 ")
    (queueId,) = context.spool.ids()
    (rcpt,) = context.spool.load(queueId).toDict()["recipients"]
    assert (rcpt["address"], rcpt["orcpt"]) == ("far@remote.example", "rfc822;fwd@example.test")


def test_starttls_injection(context):
    c = Client(context)
    c.read()
    out = c.send(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.test>\r\n")
    assert out.endswith(b"250 DSN\r\n220 2.0.0 Ready to start TLS\r\n")
    assert c.transport.tlsStartedAfter.endswith(b"220 2.0.0 Ready to start TLS\r\n")
    # what follows over "TLS": the injected MAIL was not executed
    out = c.send(b"EHLO c\r\nRCPT TO:<bob@example.test>\r\n")
    assert out.endswith(b"503 5.5.1 Send MAIL first\r\n")
    assert b"STARTTLS" not in out and b"AUTH PLAIN LOGIN" in out


def test_command_timeout(context, clock):
    c = Client(context)
    c.read()
    clock.advance(200)
    c.send(b"NOOP\r\n")
    clock.advance(299)
    assert not c.transport.disconnecting
    clock.advance(2)
    assert c.read() == b"421 4.4.2 Timeout waiting for the client, closing the connection\r\n"
    assert c.transport.disconnecting


def test_data_timeout_aborts(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"smtp_command_timeout": 10, "smtp_data_timeout": 100})
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\npartial")
    clock.advance(50)
    assert not c.transport.disconnecting
    clock.advance(60)
    assert c.read().endswith(b"421 4.4.2 Timeout waiting for the client, closing the connection\r\n")
    assert mailbox(context, "bob@example.test") == []


def test_no_timeout_while_we_store(tmp_path, clock):
    store = SlowStore()
    context = makeContext(tmp_path, clock, store=store, limits={"smtp_command_timeout": 10})
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    c.send(b"x\r\n.\r\n")
    clock.advance(30)
    assert not c.transport.disconnecting
    store.release()
    assert c.read().startswith(b"250 ")
    clock.advance(11)
    assert c.transport.disconnecting


def test_failed_login_is_answered_after_the_delay(context, clock):
    c = Client(context, "submissions")
    c.send(b"EHLO c\r\n")
    c.read()
    assert c.send(f"AUTH PLAIN {plain('alice@example.test', 'wrong')}\r\nNOOP\r\n".encode()) == b""
    clock.advance(0.9)
    assert c.read() == b""
    clock.advance(0.2)
    assert c.read() == b"535 5.7.8 Authentication credentials invalid\r\n250 2.0.0 OK\r\n"
    # the next failure from the same address waits twice as long
    c.send(f"AUTH PLAIN {plain('alice@example.test', 'wrong')}\r\n".encode())
    clock.advance(1.5)
    assert c.read() == b""
    clock.advance(0.6)
    assert c.read().startswith(b"535 ")


def test_auth_failures_limit_disconnects(tmp_path, clock):
    context = makeContext(tmp_path, clock, limits={"auth_failures": 2}, auth={"failure_delay": 0})
    c = Client(context, "submissions")
    c.send(b"EHLO c\r\n")
    c.read()
    assert c.send(f"AUTH PLAIN {plain('alice@example.test', 'x')}\r\n".encode() * 2) == (b"535 5.7.8 Authentication credentials invalid\r\n"
                        b"421 4.7.0 Too many failed logins, closing the connection\r\n")
    assert c.transport.disconnecting


def test_refusal_line():
    assert server.REFUSAL == b"421 4.7.0 Too many connections, try again later\r\n"


def test_spool_disk_full_at_open_gives_452(tmp_path, clock):
    context = makeContext(tmp_path, clock)

    def broken(*a, **kw):
        raise OSError(28, "No space left on device")

    context.spool.newMessage = broken
    c = Client(context, "submissions")
    c.send(f"EHLO c\r\nAUTH PLAIN {plain('alice@example.test', 'alice-pw')}\r\n".encode())
    c.send(b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<far@remote.example>\r\nDATA\r\n")
    c.read()
    # RFC 3463 X.3.1 "mail system full", RFC 5321 452.
    assert c.send(b"x\r\n.\r\n") == b"452 4.3.1 Mail system full; try again later\r\n"


def test_mail_loop_refused(context):
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    hops = b"".join(b"Received: from hop%d.example by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i for i in range(101))
    assert c.send(hops + b"Subject: loop\r\n\r\nx\r\n.\r\n") == b"554 5.4.6 Too many Received headers: mail loop?\r\n"
    assert mailbox(context, "bob@example.test") == []
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert c.send(hops[: -len(hops) // 101] + b"\r\nx\r\n.\r\n").startswith(b"250 ")


def test_client_gone_while_committing(tmp_path, clock):
    store = SlowStore()
    context = makeContext(tmp_path, clock, store=store)
    c = Client(context)
    c.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    c.send(b"x\r\n.\r\n")
    c.proto.connectionLost(None)
    store.release()  # the commit finishes; nothing is written to the dead connection
    assert len(mailbox(context, "bob@example.test")) == 1
    assert c.read() == b""


def test_debug_trace_masks_secrets(context):
    c = Client(context, "submissions")
    lines = []
    c.proto.session.trace = lines.append
    c.send(f"EHLO c\r\nAUTH PLAIN {plain('alice@example.test', 'alice-pw')}\r\n".encode())
    c = Client(context, "submissions")
    c.proto.session.trace = lines.append
    c.send(b"EHLO c\r\nAUTH LOGIN\r\nc2VjcmV0\r\nc2VjcmV0\r\n")
    assert lines == ["EHLO c", "AUTH PLAIN ****", "EHLO c", "AUTH LOGIN", "**** (SASL response)", "**** (SASL response)"]


def test_received_header():
    from mailnet.smtp.delivery import receivedHeader
    from mailnet.smtp.session import Envelope, Recipient

    env = Envelope("a@remote.test", [Recipient("bob@example.test", None, None, ["bob@example.test"], [])],
                   "client.remote.test", "2001:db8::1", True, "alice@example.test", True)
    header = receivedHeader(env, "mx.example.test", "ID1", "TLSv1.3 TLS_AES_256_GCM_SHA384", now=0)
    lines = header.decode().split("\r\n")
    assert lines[0] == "Received: from client.remote.test ([IPv6:2001:db8::1])"
    assert lines[1] == "\tby mx.example.test (mailnet) with ESMTPSA id ID1 (authenticated as alice@example.test)"
    assert lines[2] == "\t(TLSv1.3 TLS_AES_256_GCM_SHA384)"
    assert lines[3].startswith("\tfor <bob@example.test>; ") and lines[4] == ""


@pytest.mark.parametrize("pieces, added", [
    # the header over several pieces (pieces start at line starts)
    ([b"From: a@example.test\r\n", b"Subject: s\r\nMessage-ID: <x@y>\r\n", b"\r\nbody\r\n"], [b"Date"]),
    ([b"From: a@example.test\r\nDATE: Mon, 1 Jan 2024 00:00:00 +0000\r\n", b"\r\n", b"body\r\n"], [b"Message-ID"]),
    # a "Date:" in the body or in a folded line is not a Date field
    ([b"Subject: s\r\n x-Date: no\r\n\r\nDate: in the body\r\n"], [b"Date", b"Message-ID"]),
    ([b"Date: d\r\nMessage-ID: <m@n>\r\n\r\nb\r\n"], []),
])
def test_submission_fixups_over_pieces(tmp_path, clock, pieces, added):
    from mailnet.smtp.delivery import MessageDelivery
    from mailnet.smtp.session import Envelope, Recipient

    context = makeContext(tmp_path, clock)
    rcpt = Recipient("bob@example.test", None, None, ["bob@example.test"], [])
    envelope = Envelope("alice@example.test", [rcpt], "c", "192.0.2.7", True, "alice@example.test", True)
    delivery = MessageDelivery(context, envelope)
    for piece in pieces:
        delivery.write(piece)
    reply = []
    delivery.commit().addCallback(reply.append)
    assert reply[0].code == 250
    (stored,) = mailbox(context, "bob@example.test")
    sent = b"".join(pieces)
    head, _, body = sent.partition(b"\r\n\r\n")
    got = stored.split(b"\r\n", 1)[1]  # without Return-Path
    got = got[got.index(b"\r\n", got.index(b"for <bob")) + 2:]  # without Received
    gotHead, _, gotBody = got.partition(b"\r\n\r\n")
    assert gotBody == body
    assert gotHead.startswith(head)
    assert [line.split(b":")[0] for line in gotHead[len(head):].split(b"\r\n") if line] == added
