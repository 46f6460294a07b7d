"""
VacationResponse (RFC 8621 s8) on the real server: set over JMAP (raw
HTTP), mail delivered by smtplib, the auto-reply relayed by the queue to an
aiosmtpd peer (found through a test DNS server), at most once per sender,
never to a list or to auto-submitted mail (RFC 3834); a second local user
reads hers over IMAP.
"""

import imaplib
import smtplib
import time

import pytest

from tests.conftest import USERS
from tests.http.test_real_mail import ALICE
from tests.queue.e2e import DNSServer, Sink

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from tests.harness import MailServer

    dns = DNSServer(str(tmp_path_factory.mktemp("dns")))
    sink = Sink().start()
    server = MailServer(tmp_path_factory.mktemp("vacation"), config={
        "auth": {"allow_plaintext": True},
        "relay": {"mx_port": sink.port, "connect_timeout": 3, "reply_timeout": 10},
        "dns": {"nameservers": [f"127.0.0.1:{dns.port}"], "timeout": 2},
        "queue": {"retry_initial": 1, "retry_max": 2, "delay_warning": 0},
    })
    server.start()
    for name, password in USERS.items():
        server.addUser(name, password)
    yield server, sink
    server.stop()
    sink.stop()
    dns.stop()


def account():
    from mailnet.jmap.core import accountIdFor

    return accountIdFor(ALICE[0])


def vacation(server, *calls):
    import base64
    import http.client
    import json

    body = json.dumps({"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:vacationresponse"],
                       "methodCalls": [[name, dict(args, accountId=account()), str(n)]
                                       for n, (name, args) in enumerate(calls)]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port("http"), timeout=30)
    auth = base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
    connection.request("POST", "/jmap/api/", body, {"Content-Type": "application/json", "Authorization": "Basic " + auth})
    response = connection.getresponse()
    data = json.loads(response.read())
    connection.close()
    assert response.status == 200, data
    return [args if name != "error" else ("error", args["type"]) for name, args, _ in data["methodResponses"]]


def send(server, sender, n, extra=""):
    message = (f"From: <{sender}>\r\nTo: {ALICE[0]}\r\nSubject: mail {n}\r\nMessage-ID: <v{n}@ok.test>\r\n"
               f"{extra}\r\nHello.\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.sendmail(sender, [ALICE[0]], message.encode())


def test_one_auto_reply_per_sender_never_to_lists_or_robots(world):
    server, sink = world
    [got] = vacation(server, ("VacationResponse/get", {"ids": None}))
    assert got["list"][0]["isEnabled"] is False
    [answer] = vacation(server, ("VacationResponse/set", {"update": {"singleton": {
        "isEnabled": True, "subject": "Out of office", "textBody": "Back on Monday."}}}))
    assert answer["updated"] == {"singleton": None}
    send(server, "bob@ok.test", 1)
    [reply] = sink.handler.wait(1, timeout=60)
    assert reply["sender"] == "" and reply["rcpts"] == ["bob@ok.test"]  # RFC 3834 s3.3: null sender
    m = reply["message"]
    assert m["Auto-Submitted"] == "auto-replied" and m["Subject"] == "Out of office"
    assert m["In-Reply-To"] == "<v1@ok.test>" and m["References"] == "<v1@ok.test>" and m["From"] == ALICE[0]
    assert m.get_content().strip() == "Back on Monday."
    send(server, "bob@ok.test", 2)  # the same sender within the period
    send(server, "list@ok.test", 3, "List-Id: <friends.ok.test>\r\n")
    send(server, "robot@ok.test", 4, "Auto-Submitted: auto-generated\r\n")
    send(server, "news@ok.test", 5, "Precedence: bulk\r\n")
    send(server, "carol@ok.test", 6)  # the marker: a reply comes for this one
    replies = sink.handler.wait(2, timeout=60)
    assert [r["rcpts"] for r in replies] == [["bob@ok.test"], ["carol@ok.test"]]
    # The replies are worked out one after the other per user, in delivery order: nothing else is coming.
    time.sleep(1.0)
    assert len(sink.handler.messages) == 2
    # Every mail was delivered (the hook does not touch the delivery).
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    try:
        m.login(*ALICE)
        m.select("INBOX")
        typ, data = m.search(None, "HEADER", "Message-ID", "@ok.test")
        assert len(data[0].split()) == 6
    finally:
        m.logout()


def test_a_local_sender_reads_the_reply_over_imap(world):
    server, sink = world
    bob = "bob@example.test"
    # Each test sets the response itself: pytest-xdist may run them in different server processes.
    [answer] = vacation(server, ("VacationResponse/set", {"update": {"singleton": {
        "isEnabled": True, "subject": "Out of office", "textBody": "Back on Monday."}}}))
    assert answer["updated"] == {"singleton": None}
    message = f"From: <{bob}>\r\nTo: {ALICE[0]}\r\nSubject: mail 7\r\nMessage-ID: <local7@example.test>\r\n\r\nHello.\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as smtp:
        smtp.login(bob, USERS[bob])  # plaintext allowed in this test's config
        smtp.sendmail(bob, [ALICE[0]], message.encode())
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=30)
    try:
        m.login(bob, USERS[bob])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m.select("INBOX")
            typ, data = m.search(None, "HEADER", "Auto-Submitted", "auto-replied")
            if data[0]:
                break
            time.sleep(0.1)
        [number] = data[0].split()
        typ, data = m.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT IN-REPLY-TO RETURN-PATH)])")
        head = data[0][1]
        assert b"Subject: Out of office" in head and b"In-Reply-To: <local7@example.test>" in head
        assert b"Return-Path: <>" in head
    finally:
        m.logout()
