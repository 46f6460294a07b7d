"""
Issue 10 item 7, with the real server: a stranger on the MX asking
NOTIFY=SUCCESS for a local recipient, with a chosen ORCPT and 1,000 long
header lines, must not make us mail a large report to an address of its
choice.  By default such a NOTIFY is treated as failures-only; with
``[queue] mx_notify = "all"`` the report goes out but returns at most
``bounce_size_limit`` bytes of the original.
"""

import smtplib
import socket
import ssl

import pytest

from tests.queue.e2e import waitFor

pytestmark = pytest.mark.slow

HEADER = b"".join(b"X-Filler-%04d: %s\r\n" % (n, b"y" * 700) for n in range(1000))
ORCPT = "rfc822;" + "z" * 480 + "@example.test"  # just under RFC 3461's 500


def unverified():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Raw:
    """A raw SMTP dialogue: one command, one reply."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.file = self.sock.makefile("rb")
        self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def send(self, data):
        self.sock.sendall(data)
        return self.reply()

    def close(self):
        self.sock.close()


def attack(server):
    c = Raw(server.port("smtp"))
    assert c.send(b"EHLO attacker.example\r\n").startswith(b"250")
    assert c.send(b"MAIL FROM:<victim@example.test> RET=HDRS ENVID=E1\r\n").startswith(b"250")
    assert c.send(b"RCPT TO:<bob@example.test> ORCPT=rfc822;" + b"z" * 501 + b"\r\n").startswith(b"501")
    reply = c.send(f"RCPT TO:<bob@example.test> NOTIFY=SUCCESS,DELAY ORCPT={ORCPT}\r\n".encode())
    assert reply.startswith(b"250"), reply
    assert c.send(b"DATA\r\n").startswith(b"354")
    assert c.send(HEADER + b"Subject: hi\r\n\r\nbody\r\n.\r\n").startswith(b"250")
    c.send(b"QUIT\r\n")
    c.close()


# The attack forges a local victim so that its DSN lands where the test can
# see it; the local-domain rule (tests/mailauth) would refuse that sender.
FORGERY_ALLOWED = {"mailauth": {"local_spoofing": "label"}}


def setup(server):
    for name in ("alice@example.test", "bob@example.test", "victim@example.test"):
        server.addUser(name, "pw-" + name)


def test_mx_notify_success_is_not_honoured_by_default(make_server):
    server = make_server(config=FORGERY_ALLOWED)
    setup(server)
    attack(server)
    waitFor(lambda: len(server.messageFiles("bob@example.test")) == 1, what="delivery to bob")

    # The same request from an authenticated user is honoured: a success DSN
    # (the positive control, so the absence below is not a matter of time).
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=60) as c:
        c.starttls(context=unverified())
        c.login("alice@example.test", "pw-alice@example.test")
        c.sendmail("alice@example.test", ["bob@example.test"], b"Subject: mine\r\n\r\nhi\r\n",
                   rcpt_options=["NOTIFY=SUCCESS"])
    server.waitForLog("success DSN for 1 recipient(s) queued as", timeout=30)
    waitFor(lambda: len(server.messageFiles("alice@example.test")) == 1, timeout=30, what="alice's DSN")
    waitFor(lambda: len(server.messageFiles("bob@example.test")) == 2, what="second delivery to bob")
    assert server.messageFiles("victim@example.test") == []
    assert "to <victim@example.test>" not in server.log()


def test_mx_notify_all_returns_at_most_the_size_limit(make_server):
    server = make_server(config={"queue": {"mx_notify": "all"}, **FORGERY_ALLOWED})
    setup(server)
    attack(server)
    [report] = waitFor(lambda: server.messageFiles("victim@example.test"), timeout=30, what="the DSN to the victim")
    with open(report, "rb") as f:
        data = f.read()
    assert b"Successful Mail Delivery Report" in data and b"Action: delivered" in data
    assert len(data) < 50_000 + 8_000, len(data)  # was 755 KB before the limit
    assert b"X-Filler-0000: " in data and b"X-Filler-0999" not in data
    assert b"larger than 50000 bytes" in data
    assert b"Original-Recipient: rfc822; " + ORCPT[7:].encode() in data


# -- The policy on its own (no server) ------------------------------------------------------


@pytest.mark.parametrize("notify,auth,policy,verified,expected", [
    (["SUCCESS"], None, "failure", False, ["FAILURE"]),
    (["SUCCESS", "FAILURE", "DELAY"], None, "failure", False, ["FAILURE"]),
    (["DELAY"], None, "failure", False, ["FAILURE"]),
    (["FAILURE"], None, "failure", False, ["FAILURE"]),
    (["NEVER"], None, "failure", False, ["NEVER"]),
    (None, None, "failure", False, None),
    (["SUCCESS"], "alice@example.test", "failure", False, ["SUCCESS"]),
    (["SUCCESS", "DELAY"], None, "all", False, ["SUCCESS", "DELAY"]),
    (["SUCCESS"], None, "failure", True, ["SUCCESS"]),  # SPF pass for MAIL FROM on the MX (tests/mailauth/test_mx_more_e2e.py)
])
def test_honoured_notify(notify, auth, policy, verified, expected):
    from mailnet.smtp.delivery import honouredNotify
    from mailnet.smtp.session import IncomingEnvelope

    envelope = IncomingEnvelope(sender="x@remote.test", recipients=[], helo="h", peer="192.0.2.1", tls=False, auth=auth,
                                esmtp=True, senderVerified=verified)
    assert honouredNotify(notify, envelope, policy) == expected
