"""
End to end, all on 127.0.0.1: the real mailnet process relays the mail in
its spool, finding MX hosts through a test DNS server (twisted.names, set in
``[dns] nameservers``), to receiving SMTP servers (aiosmtpd) on a port the
test chooses (``[relay] mx_port``).

Mail is put into the running server's spool with ``Spool.newMessage`` and
the queue is flushed through the control socket or the ``mailnet queue``
command, as the SMTP server is not part of this branch.
"""

import email
import email.policy
import importlib.util
import json
import os
import re
import socket

import pytest
from twisted.internet import defer

from mailnet import tls
from mailnet.queue import control
from mailnet.queue.spool import Spool
from tests.harness import MailServer
from tests.queue.e2e import DNSServer, Sink, SinkHandler, freePort, waitFor

pytestmark = pytest.mark.slow



def present(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


MAILDIR = present("mailnet.store.maildir")


def sync(f, *a, **kw):
    return defer.maybeDeferred(f, *a, **kw)


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    server = DNSServer(str(tmp_path_factory.mktemp("dns")))
    yield server
    server.stop()


@pytest.fixture
def sinks():
    made = []

    def make(**kw):
        sink = Sink(**kw)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.stop()


@pytest.fixture
def relay(tmp_path, dns):
    """``relay(port, **sections)``: a running mailnet relaying MX mail to ``port``."""
    made = []

    def make(port, **sections):
        config = {
            "relay": {"mx_port": port, "connect_timeout": 3, "reply_timeout": 10},
            "dns": {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2},
            "queue": {"retry_initial": 1, "retry_max": 2, "delay_warning": 0},
            "store": {"backend": "maildir" if MAILDIR else "memory"},
        }
        for section, values in sections.items():
            config.setdefault(section, {}).update(values)
        server = MailServer(tmp_path / f"mailnet{len(made)}", config=config)
        made.append(server)
        server.start()
        server.addUser("alice@example.test", "alice-pw")
        return server

    yield make
    for server in made:
        server.stop()


def spool(server):
    return Spool(os.path.join(server.dataDir, "queue"), runInThread=sync)


def message(n=1, sender="alice@example.test", to="bob@ok.test", body="Hello from the queue test.\r\n"):
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: test {n}\r\nMessage-ID: <m{n}@example.test>\r\n"
            f"\r\n{body}").encode()


def put(server, rcpts, sender="alice@example.test", data=None, **kw):
    """Write an item into the running server's spool (as the SMTP server would)."""
    writer = spool(server).newMessage(sender, [r if isinstance(r, dict) else {"address": r} for r in rcpts], **kw)
    writer.write(data or message(to=", ".join(r if isinstance(r, str) else r["address"] for r in rcpts)))
    out = []
    writer.commit().addBoth(out.append)
    assert isinstance(out[0], str), out
    return out[0]


def ask(server, command, queueId=None):
    answer = control.ask(os.path.join(server.dataDir, "run", "queue.sock"), command, queueId)
    assert answer["ok"], answer
    return answer["result"]


def emptied(server):
    return waitFor(lambda: spool(server).ids() == [], what="empty queue") and True


def test_delivered_by_mx_and_implicit_mx(sinks, relay):
    sink = sinks().start()
    server = relay(sink.port)
    qid = put(server, ["bob@ok.test", "carol@nomx.test"])
    ask(server, "flush")
    got = sink.handler.wait(2)
    emptied(server)
    assert sorted(tuple(m["rcpts"]) for m in got) == [("bob@ok.test",), ("carol@nomx.test",)]
    for m in got:
        assert m["sender"] == "alice@example.test"
        assert m["data"].replace(b"\r\n", b"\n") == message(to="bob@ok.test, carol@nomx.test").replace(b"\r\n", b"\n")
        assert "SIZE=%d" % len(message(to="bob@ok.test, carol@nomx.test")) in m["mail_options"]
    line = server.waitForLog(f"queue {qid}: to=<bob@ok.test>")
    assert re.search(rf"via mx\.ok\.test\[127\.0\.0\.1\]:{sink.port}: relayed \(250 2\.0\.0 OK queued\)", line), line
    server.waitForLog(f"queue {qid}: to=<carol@nomx.test> via nomx.test[127.0.0.1]:{sink.port}: relayed")


def test_peer_down_then_up(sinks, relay):
    port = freePort()
    server = relay(port)
    qid = put(server, ["bob@ok.test"])
    ask(server, "flush")
    line = server.waitForLog(f"queue {qid}: to=<bob@ok.test>")
    assert f"deferred (451 4.4.1 connect to mx.ok.test[127.0.0.1]:{port}: connection refused); next attempt in" in line
    [envelope] = ask(server, "list")
    [rcpt] = envelope["recipients"]
    assert rcpt["status"] == "delayed" and rcpt["attempts"] >= 1
    sink = sinks(port=port).start()
    [m] = sink.handler.wait(1)  # retried on its own schedule (1-2 s here)
    assert m["rcpts"] == ["bob@ok.test"]
    emptied(server)


def test_greylisted_then_accepted(sinks, relay):
    sink = sinks().start()
    server = relay(sink.port)
    qid = put(server, ["bob@grey.test"])
    ask(server, "flush")
    server.waitForLog(f"queue {qid}: to=<bob@grey.test> via mx.grey.test[127.0.0.1]:{sink.port}: deferred (451 4.7.1 greylisted, come back later)")
    [m] = sink.handler.wait(1)
    assert m["rcpts"] == ["bob@grey.test"]
    emptied(server)
    assert len(sink.handler.messages) == 1


def test_permanent_failures_bounce_once_to_the_sender(sinks, relay):
    sink = sinks().start()
    server = relay(sink.port)
    rcpts = ["x@reject.test", "y@nullmx.test", "z@nosuch.test", "ok@ok.test"]
    local = put(server, rcpts, envid="LOCAL1")
    remote = put(server, rcpts, sender="carol@ok2.test", envid="REMOTE1", ret="HDRS")
    ask(server, "flush")
    # The remote sender's bounce comes back to the sink from the null sender.
    sink.handler.wait(3)
    emptied(server)
    got = list(sink.handler.messages)
    assert len(got) == 3, [(m["sender"], m["rcpts"]) for m in got]
    bounces = [m for m in got if m["sender"] == ""]
    assert len(bounces) == 1, [(m["sender"], m["rcpts"]) for m in got]
    assert bounces[0]["rcpts"] == ["carol@ok2.test"]
    report = bounces[0]["message"]
    assert report.get_content_type() == "multipart/report"
    human, status, returned = report.iter_parts()
    blocks = status.get_payload()
    assert blocks[0]["Original-Envelope-Id"] == "REMOTE1"
    assert blocks[0]["Reporting-MTA"] == "dns; mx.example.test"
    found = {b["Final-Recipient"]: (b["Action"], b["Status"], b["Remote-MTA"], b["Diagnostic-Code"]) for b in blocks[1:]}
    assert found == {
        "rfc822; x@reject.test": ("failed", "5.1.1", "dns; mx.reject.test", "smtp; 550 5.1.1 <x@reject.test>: no such user here"),
        "rfc822; y@nullmx.test": ("failed", "5.1.10", None, "X-mailnet; 556 5.1.10 domain nullmx.test accepts no mail (null MX, RFC 7505)"),
        "rfc822; z@nosuch.test": ("failed", "5.1.2", None, "X-mailnet; 550 5.1.2 domain nosuch.test does not exist (DNS: no such domain)"),
    }
    assert returned.get_content_type() == "text/rfc822-headers"  # RET=HDRS
    # The local sender's bounce went into alice's mailbox.
    server.waitForLog("to=<alice@example.test> via local: delivered")
    assert sorted(m["rcpts"][0] for m in got if m["sender"]) == ["ok@ok.test", "ok@ok.test"]
    if MAILDIR:
        # Read as alice would: IMAP or POP3 when the build has them.
        waitFor(lambda: server.messageFiles("alice@example.test"), what="the bounce in alice's Maildir")
        [raw] = mailbox(server, "alice@example.test", "alice-pw")
        bounce = email.message_from_bytes(raw, policy=email.policy.default)
        assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
        blocks = list(bounce.iter_parts())[1].get_payload()
        assert blocks[0]["Original-Envelope-Id"] == "LOCAL1"
        assert len(blocks) == 4
        assert list(bounce.iter_parts())[2].get_content_type() == "message/rfc822"
    assert server.log().count("failure DSN") == 2
    assert local != remote


def test_several_messages_over_one_connection(sinks, relay):
    sink = sinks().start()
    server = relay(sink.port, relay={"max_connections_per_destination": 1})
    for n in range(6):
        put(server, [f"u{n}@ok.test"], data=message(n, to=f"u{n}@ok.test"))
    ask(server, "flush")
    got = sink.handler.wait(6)
    assert sorted(m["rcpts"][0] for m in got) == [f"u{n}@ok.test" for n in range(6)]
    assert len(sink.handler.peers) == 1  # one connection carried all six
    emptied(server)


def test_connection_per_message_when_reuse_is_off(sinks, relay):
    sink = sinks().start()
    server = relay(sink.port, relay={"max_connections_per_destination": 1, "messages_per_connection": 1})
    for n in range(3):
        put(server, [f"u{n}@ok.test"], data=message(n))
    ask(server, "flush")
    sink.handler.wait(3)
    assert len(sink.handler.peers) == 3


def test_kill9_mid_run_nothing_lost_nothing_sent_twice(sinks, relay):
    handler = SinkHandler(slow=0.15)
    sink = sinks(handler=handler).start()
    server = relay(sink.port, relay={"max_connections_per_destination": 2})
    total = 16
    for n in range(total):
        put(server, [f"u{n}@ok.test", f"u{n}@ok2.test"], data=message(n))
    ask(server, "flush")
    handler.wait(8)
    server.kill()
    # What the spool says was sent at the moment of the crash.
    s = spool(server)
    remaining = {qid: s.load(qid).toDict() for qid in s.ids()}
    markedSent = set()
    remainingIds = set()
    for env in remaining.values():
        msgid = _msgid(s, env["id"])
        remainingIds.add(msgid)
        for r in env["recipients"]:
            if r["status"] == "sent":
                markedSent.add((msgid, r["address"]))
    everything = {(f"<m{n}@example.test>", f"u{n}@{d}") for n in range(total) for d in ("ok.test", "ok2.test")}
    removed = {pair for pair in everything if pair[0] not in remainingIds}
    markedSent |= removed
    delivered = _tally(handler.messages)
    assert markedSent <= set(delivered)  # nothing recorded as sent that the peer did not get
    assert len(remaining) > 0  # the crash really was in the middle
    handler.slow = 0
    server.start()  # same data directory
    waitFor(lambda: spool(server).ids() == [], timeout=30, what="empty queue after restart")
    delivered = _tally(handler.messages)
    assert set(delivered) == everything  # nothing lost
    for pair in markedSent:
        assert delivered[pair] == 1, pair  # nothing marked sent was sent again
    # Any duplicate is a recipient that was in flight at the crash (docs/queue.md).
    assert all(count == 1 for pair, count in delivered.items() if pair in markedSent)


def _msgid(s, qid):
    with s.openData(qid) as f:
        return email.message_from_bytes(f.read(), policy=email.policy.default)["Message-ID"]


def _tally(messages):
    counts = {}
    for m in list(messages):
        msgid = m["message"]["Message-ID"]
        for r in m["rcpts"]:
            counts[(msgid, r)] = counts.get((msgid, r), 0) + 1
    return counts


def test_operator_commands_on_a_running_server(relay):
    # Nobody listens: mail stays queued.  The port is held bound (not listening) for the whole test, so that no
    # other test's server can take it in between (a free port number alone could be reused by a parallel worker).
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    server = relay(closed.getsockname()[1])
    qid = put(server, ["bob@ok.test"])
    server.mailnet("queue", "flush")
    server.waitForLog(f"queue {qid}: to=<bob@ok.test>")
    out = server.mailnet("queue", "list").stdout
    assert qid in out and "bob@ok.test  delayed" in out and "connection refused" in out
    assert server.mailnet("queue", "hold", qid).stdout == f"held {qid}\n"
    assert json.loads(server.mailnet("queue", "list", "--json").stdout)[0]["held"] is True
    assert spool(server).load(qid).held is True  # written by the server itself
    out = server.mailnet("queue", "show", qid).stdout
    assert "(held)" in out and "Subject: test 1" in out
    assert "1 recipient(s) due now" not in server.mailnet("queue", "flush").stdout
    server.mailnet("queue", "release", qid)
    assert spool(server).load(qid).held is False
    r = server.mailnet("queue", "delete", "0123abcd", check=False)
    assert r.returncode == 1 and r.stderr == "mailnet: queue delete: no queue item 0123abcd\n"
    assert server.mailnet("queue", "delete", qid).stdout == f"deleted {qid}\n"
    waitFor(lambda: spool(server).ids() == [], what="deleted")
    assert server.mailnet("queue", "list").stdout == "the queue is empty\n"
    server.stop()
    # Without a server the same commands work on the files.
    qid = put(server, ["bob@ok.test"])
    assert "no server is running" in server.mailnet("queue", "flush").stdout
    assert server.mailnet("queue", "hold", qid).stdout == f"held {qid}\n"
    assert spool(server).load(qid).held is True


def test_required_tls_verified_and_opportunistic(tmp_path, sinks, relay):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    tls.makeSelfSigned(cert, key, "mx.tls.test")
    sink = sinks(certFile=cert, keyFile=key).start()
    server = relay(sink.port, relay={"require_tls": ["tls.test", "ok.test"], "tls_ca_file": cert})
    good = put(server, ["a@tls.test"])
    mismatch = put(server, ["b@ok.test"])
    opportunistic = put(server, ["c@ok2.test"])
    ask(server, "flush")
    got = sink.handler.wait(2)
    assert {m["rcpts"][0]: m["tls"] for m in got} == {"a@tls.test": True, "c@ok2.test": True}
    line = server.waitForLog(f"queue {mismatch}: to=<b@ok.test>")
    assert "deferred (421 4.7.5 TLS with mx.ok.test[127.0.0.1]" in line, line
    waitFor(lambda: spool(server).ids() == [mismatch], what="only the mismatch left")
    assert good and opportunistic


def test_smarthost_with_starttls_and_auth(tmp_path, sinks, relay):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    tls.makeSelfSigned(cert, key, "localhost")
    sink = sinks(certFile=cert, keyFile=key, auth=("relayuser", "relay-secret")).start()
    secret = tmp_path / "smarthost-password"
    secret.write_text("relay-secret\n")
    server = relay(freePort(), relay={
        "smarthost": f"localhost:{sink.port}", "smarthost_user": "relayuser",
        "smarthost_password_file": str(secret), "smarthost_tls": "starttls", "tls_ca_file": cert})
    qid = put(server, ["far@nowhere-in-dns.test", "near@ok.test"])
    ask(server, "flush")
    [m] = sink.handler.wait(1)
    assert sorted(m["rcpts"]) == ["far@nowhere-in-dns.test", "near@ok.test"]  # one transaction
    assert m["tls"] and m["auth"]
    emptied(server)
    assert "relay-secret" not in server.log()
    server.waitForLog(f"queue {qid}: to=<far@nowhere-in-dns.test> via localhost[127.0.0.1]:{sink.port}: relayed")
    # A wrong password keeps the mail and says why.
    server.stop()  # (a running server may still hold a logged-in session)
    secret.write_text("wrong\n")
    server.start()
    qid = put(server, ["x@ok.test"])
    ask(server, "flush")
    line = server.waitForLog(f"queue {qid}: to=<x@ok.test>")
    assert "deferred (454 4.7.0 authentication with localhost failed: 535" in line, line


SMTP = present("mailnet.smtp.server")
IMAP = present("mailnet.imap.server")
POP3 = present("mailnet.pop3.server")


def mailbox(server, user, password):
    """The messages in a user's INBOX: over IMAP (or POP3) when the build has it, else the Maildir files."""
    import ssl

    context = ssl._create_unverified_context()
    if IMAP:
        import imaplib

        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=20)
        imap.starttls(context)
        imap.login(user, password)
        imap.select("INBOX")
        _, data = imap.uid("SEARCH", None, "ALL")
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            out.append(parts[0][1])
        imap.logout()
        return out
    if POP3:
        import poplib

        pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=20)
        pop.stls(context)
        pop.user(user)
        pop.pass_(password)
        count = len(pop.list()[1])
        out = [b"\r\n".join(pop.retr(n + 1)[1]) + b"\r\n" for n in range(count)]
        pop.quit()
        return out
    out = []
    for path in server.messageFiles(user):
        with open(path, "rb") as f:
            out.append(f.read())
    return out


@pytest.mark.skipif(not SMTP, reason="needs the SMTP server (mailnet.smtp) in the build")
def test_submitted_over_smtp_relayed_and_bounced_into_the_senders_mailbox(sinks, relay):
    import smtplib
    import ssl

    sink = sinks().start()
    server = relay(sink.port)
    body = (b"From: alice@example.test\r\nTo: bob@ok.test, x@reject.test\r\nSubject: submitted\r\n"
            b"Message-ID: <sub1@example.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello over submission.\r\n")
    client = smtplib.SMTP("127.0.0.1", server.port("submission"))
    client.starttls(context=ssl._create_unverified_context())
    client.login("alice@example.test", "alice-pw")
    client.sendmail("alice@example.test", ["bob@ok.test", "x@reject.test"], body,
                    mail_options=["RET=HDRS", "ENVID=SUB1"], rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    client.quit()
    [m] = sink.handler.wait(1)
    assert m["rcpts"] == ["bob@ok.test"] and m["sender"] == "alice@example.test"
    assert m["data"].startswith(b"Received: ") and m["data"].endswith(body)
    emptied(server)
    # Two reports for alice: the failure (x@reject.test) and, as the sink has
    # no DSN extension, "relayed" for bob@ok.test (RFC 3461 s5.2.2).
    waitFor(lambda: len(server.messageFiles("alice@example.test")) == 2, what="two DSNs in alice's Maildir")
    reports = mailbox(server, "alice@example.test", "alice-pw")
    assert len(reports) == 2
    parsed = [email.message_from_bytes(r, policy=email.policy.default) for r in reports]
    bySubject = {p["Subject"]: p for p in parsed}
    failure = bySubject["Undelivered Mail Returned to Sender"]
    blocks = list(failure.iter_parts())[1].get_payload()
    assert blocks[0]["Original-Envelope-Id"] == "SUB1"
    assert (blocks[1]["Final-Recipient"], blocks[1]["Status"]) == ("rfc822; x@reject.test", "5.1.1")
    assert list(failure.iter_parts())[2].get_content_type() == "text/rfc822-headers"
    success = bySubject["Successful Mail Delivery Report"]
    block = list(success.iter_parts())[1].get_payload()[1]
    assert (block["Final-Recipient"], block["Action"]) == ("rfc822; bob@ok.test", "relayed")
